package supapool

import "context"

// authKey is the ctx key of a request-scoped user token.
type authKey struct{}

// authToken holds a user's JWT. It is stored behind a pointer so that
// printing a ctx (context's String shows values) shows only the type.
type authToken struct{ jwt string }

// WithAuthToken returns a ctx that makes every PostgREST request sent with
// it by a pool's client carry "Authorization: Bearer <jwt>" instead of the
// pool's key, so that PostgreSQL's row-level security sees the user. The
// apikey header stays the pool's key, and nothing is stored on the client:
// the next borrower of the same client is not affected.
//
// An empty jwt does not fall back to the pool's key: every request sent
// with the returned ctx fails with ErrEmptyAuthToken before it leaves, so
// a handler that forgot to check for a missing token cannot bypass
// row-level security by accident.
//
// Pass the returned ctx to the closure's requests, for example
// ExecuteToWithContext(ctx, &out). Do not call UpdateAuthSession, SignIn*
// or RefreshToken on a pooled client: they rewrite the client's shared
// headers. A client whose auth state was changed that way is destroyed on
// release rather than handed to another caller.
func WithAuthToken(ctx context.Context, jwt string) context.Context {
	return context.WithValue(ctx, authKey{}, &authToken{jwt: jwt})
}

func authTokenFrom(ctx context.Context) *authToken {
	t, _ := ctx.Value(authKey{}).(*authToken)
	return t
}
