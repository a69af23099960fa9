package supapool

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	supabase "github.com/supabase-community/supabase-go"

	"github.com/supapool/supapool/internal/clientpatch"
)

// RPC calls the PostgreSQL function fn through PostgREST (POST
// /rest/v1/rpc/fn) on c, a client checked out from a Pool, with args
// encoded as the JSON body (nil args sends {}), and decodes the JSON result
// into out unless out is nil. The request is bounded by ctx, goes through
// c's checkout like every other request (the user's token, the wire
// record), and so counts for WithRetry as a write: it is retried only when
// it provably never ran, or with Idempotent().
//
// It returns nil on success. A response with status >= 400 and a request
// that failed at the transport return the *Error the pool recorded
// (Status, PostgREST's Code and Message, or the transport error in Err).
// Unlike supabase-go's Rpc, whose error lands in a field shared by every
// user of the client, RPC's error is its own.
func RPC(ctx context.Context, c *supabase.Client, fn string, args, out any) error {
	if fn == "" {
		return errors.New("supapool: RPC: the function name is empty")
	}
	parent, err := clientpatch.Transport(c)
	if err != nil {
		return fmt.Errorf("supapool: RPC: %w", err)
	}
	ct, ok := parent.(*clientTransport)
	if !ok {
		return errors.New("supapool: RPC: the client is not from a supapool.Pool; acquire it from a Pool")
	}
	rest, err := clientpatch.REST(c)
	if err != nil {
		return fmt.Errorf("supapool: RPC: %w", err)
	}
	body := []byte("{}")
	if args != nil {
		if body, err = json.Marshal(args); err != nil {
			return fmt.Errorf("supapool: RPC %s: encoding args: %w", fn, err)
		}
	}
	var fail *Error
	ctx = context.WithValue(ctx, failSlotKey{}, &fail)
	u := strings.TrimRight(ct.p.url, "/") + supabase.REST_URL + "/rpc/" + url.PathEscape(fn)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("supapool: RPC %s: %w", fn, err)
	}
	resp, err := rest.Transport.RoundTrip(req)
	if err != nil {
		if fail != nil {
			return fail
		}
		return fmt.Errorf("supapool: RPC %s: %w", fn, err)
	}
	defer resp.Body.Close()
	if fail != nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return fail
	}
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
	} else {
		err = json.NewDecoder(resp.Body).Decode(out)
	}
	if err != nil {
		return fmt.Errorf("supapool: RPC %s: reading the result: %w", fn, err)
	}
	return nil
}
