// Package clientpatch binds a supabase-go client's PostgREST requests to a
// caller's http.RoundTripper.
//
// supabase-go v0.0.4 keeps its PostgREST client in the unexported field
// Client.rest and offers no option for the HTTP transport; without help
// every client sends its requests through http.DefaultTransport. The
// postgrest-go transport does have an exported Parent RoundTripper that it
// uses instead of the default when set. This package reaches the rest field
// once per client, right after supabase.NewClient and before the client is
// shared, and sets Parent. Everything that depends on supabase-go's layout
// is in this file, and Check fails loudly if an upgrade changes it.
package clientpatch

import (
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"unsafe"

	postgrest "github.com/supabase-community/postgrest-go"
	supabase "github.com/supabase-community/supabase-go"
)

// restField is the offset of supabase.Client.rest, or layoutErr if the
// field is missing or no longer a *postgrest.Client.
var restOffset, layoutErr = findRestField()

func findRestField() (uintptr, error) {
	t := reflect.TypeFor[supabase.Client]()
	f, ok := t.FieldByName("rest")
	if !ok {
		return 0, errors.New("supabase.Client has no field \"rest\" (supabase-go changed its layout)")
	}
	if want := reflect.TypeFor[*postgrest.Client](); f.Type != want {
		return 0, fmt.Errorf("supabase.Client.rest is a %v, not a %v (supabase-go changed its layout)", f.Type, want)
	}
	return f.Offset, nil
}

// Check reports whether supabase-go's layout is the one this package knows.
func Check() error { return layoutErr }

// REST returns c's PostgREST client.
func REST(c *supabase.Client) (*postgrest.Client, error) {
	if layoutErr != nil {
		return nil, layoutErr
	}
	if c == nil {
		return nil, errors.New("nil supabase client")
	}
	rest := *(**postgrest.Client)(unsafe.Add(unsafe.Pointer(c), restOffset))
	if rest == nil || rest.Transport == nil {
		return nil, errors.New("supabase client has no PostgREST transport")
	}
	return rest, nil
}

// SetTransport makes every PostgREST request of c go through rt. Call it
// before c is shared between goroutines.
func SetTransport(c *supabase.Client, rt http.RoundTripper) error {
	rest, err := REST(c)
	if err != nil {
		return err
	}
	rest.Transport.Parent = rt
	return nil
}

// Transport returns the RoundTripper c's PostgREST requests go through
// (nil means http.DefaultTransport).
func Transport(c *supabase.Client) (http.RoundTripper, error) {
	rest, err := REST(c)
	if err != nil {
		return nil, err
	}
	return rest.Transport.Parent, nil
}
