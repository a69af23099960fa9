package supapool_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/supapool/supapool"
)

func TestErrorNeverRan(t *testing.T) {
	for _, tc := range []struct {
		rep  reply
		want bool
	}{{pgrst000, true}, {pgrst003, true}, {gateway502, false}, {admin57P01, false}, {uniqueViol, false}} {
		srv := newFakeREST(t, tc.rep)
		s := newService(t, srv.URL, supapool.Config{})
		var pe *supapool.Error
		require.ErrorAs(t, s.WithClient(context.Background(), insert), &pe)
		assert.Equal(t, tc.want, pe.NeverRan(), "%d %s", pe.Status, pe.Code)
	}
}
