package supapool_test

import "github.com/supabase-community/gotrue-go/types"

func supabaseSession(token string) types.Session {
	return types.Session{AccessToken: token}
}
