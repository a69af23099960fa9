package catalog

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	supabase "github.com/supabase-community/supabase-go"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestListURL checks that ListURL is the URL List requests, so that a
// request built by hand from it sends the same query.
func TestListURL(t *testing.T) {
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.URL.String()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`[{"id":"c1","budget_id":"b1","owner_id":"u1","name":"Rent","group_name":"Home","sort_order":2,"is_income":true}]`))
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(http.DefaultTransport.(*http.Transport).CloseIdleConnections) // supabase-go's transport

	c, err := supabase.NewClient(srv.URL, "key", nil)
	require.NoError(t, err)
	cats, err := List(t.Context(), c, "b1")
	require.NoError(t, err)

	assert.Equal(t, ListURL(srv.URL, "b1"), srv.URL+<-got)
	home := "Home"
	assert.Equal(t, []Category{{ID: "c1", BudgetID: "b1", OwnerID: "u1", Name: "Rent", GroupName: &home, SortOrder: 2, IsIncome: true}}, cats)
}
