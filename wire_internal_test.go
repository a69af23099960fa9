package supapool

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The fuzz targets of what the recorder parses from the network. They call
// the unexported parsers directly, so they live in the package; the
// behaviour they protect is tested through the API in wire_test.go and
// retry_test.go.

// FuzzRetryAfter: any header value gives a wait that is never negative,
// equals the number of seconds (saturated at the longest Duration) for
// delay-seconds, and the time until the date for an HTTP date.
func FuzzRetryAfter(f *testing.F) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, s := range []string{
		"", "0", "1", "120", " 7 ", "\t3", "-5", "+5", "1.5", "1e3", "0x10", "٣",
		"9223372036", "9223372037", "10000000000", "18446744074", "18446744073709551615", "99999999999999999999",
		now.Add(3 * time.Second).Format(http.TimeFormat), now.Add(-time.Hour).Format(http.TimeFormat),
		"Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994", "Fri, 31 Dec 9999 23:59:59 GMT", "soon",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		got := parseRetryAfter(v, func() time.Time { return now })
		if got < 0 {
			t.Fatalf("parseRetryAfter(%q) = %v, negative", v, got)
		}
		s := strings.TrimSpace(v)
		var want time.Duration
		if n, ok := new(big.Int).SetString(s, 10); ok && s != "" && strings.Trim(s, "0123456789") == "" {
			n.Mul(n, big.NewInt(int64(time.Second)))
			want = math.MaxInt64
			if n.IsInt64() {
				want = time.Duration(n.Int64())
			}
		} else if tm, err := http.ParseTime(s); err == nil {
			want = max(tm.Sub(now), 0)
		}
		if got != want {
			t.Fatalf("parseRetryAfter(%q) = %v, want %v", v, got, want)
		}
	})
}

// observeErrorBody runs body through the recorder as a 400 answer and
// returns the recorded failure and what the caller then reads.
func observeErrorBody(t *testing.T, body []byte) (*Error, []byte) {
	req, err := http.NewRequest(http.MethodGet, "http://127.0.0.1:1/rest/v1/t", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp := &http.Response{StatusCode: 400, Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(body))}
	rec := &wireRecord{}
	observe(rec, req, resp, nil)
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the body the caller gets: %v", err)
	}
	if err := resp.Body.Close(); err != nil {
		t.Fatal(err)
	}
	fail, transportFailed, _ := rec.snapshot()
	if fail == nil || fail.Status != 400 || transportFailed {
		t.Fatalf("recorded %+v, transportFailed %v", fail, transportFailed)
	}
	return fail, got
}

// FuzzErrorBody: for an error body of any bytes and any size, the caller
// reads exactly the bytes that were sent; a body that encoding/json reads
// as PostgREST's error gives the same fields; and a body that starts with
// PostgREST's code gives that code however long and broken the rest is.
func FuzzErrorBody(f *testing.F) {
	for _, b := range []string{
		`{"code":"42P01","message":"relation \"public.nope\" does not exist","details":null,"hint":null}`,
		`{"code":"23505","message":"duplicate key","details":"Key (id)=(1) already exists.","hint":{"a":[1,2]}}`,
		`{"message":"no code","CODE":"X1","code":null}`, `{"code":1}`, `{"code":"A","code":"B"}`, `[]`, `null`, ``,
		`<html><body><h1>502 Bad Gateway</h1></body></html>`, `{"code":"\ud800","message":"\xff"}`, `{"code":"X"} trailing`,
	} {
		f.Add([]byte(b), "PGRST000", uint16(0))
	}
	f.Add([]byte(`","details":null}`), "42P01", uint16(20000))
	f.Add([]byte("\x00\xff{"), "", uint16(16384))
	f.Fuzz(func(t *testing.T, body []byte, code string, pad uint16) {
		fail, got := observeErrorBody(t, body)
		if !bytes.Equal(got, body) {
			t.Fatalf("the caller read %d bytes that differ from the %d sent", len(got), len(body))
		}
		var pg struct {
			Code    string `json:"code"`
			Message string `json:"message"`
			Details any    `json:"details"`
			Hint    any    `json:"hint"`
		}
		if len(body) <= maxErrorBody && json.Unmarshal(body, &pg) == nil {
			want := [4]string{pg.Code, pg.Message, text(pg.Details), text(pg.Hint)}
			if g := [4]string{fail.Code, fail.Message, fail.Details, fail.Hint}; g != want {
				t.Fatalf("fields %q, encoding/json reads %q", g, want)
			}
		}

		quoted, err := json.Marshal(code)
		if err != nil {
			t.Fatal(err)
		}
		var wantCode string // code as JSON carries it (invalid UTF-8 becomes U+FFFD)
		if err := json.Unmarshal(quoted, &wantCode); err != nil {
			t.Fatal(err)
		}
		long := []byte(`{"code":` + string(quoted) + `,"message":"` + strings.Repeat("x", 4*int(pad)) + `"`)
		long = append(long, body...)
		fail, got = observeErrorBody(t, long)
		if !bytes.Equal(got, long) {
			t.Fatalf("the caller read %d bytes that differ from the %d sent", len(got), len(long))
		}
		// The code written first is found, unless the rest of the body has
		// a key of its own that encoding/json would also take for "code"
		// (the last one wins, case does not matter, escapes are undone).
		lower := bytes.ToLower(body)
		laterCode := bytes.Contains(lower, []byte("code")) || bytes.Contains(lower, []byte(`\u`))
		if !laterCode && len(`{"code":`)+len(quoted)+1 <= maxErrorBody && fail.Code != wantCode {
			t.Fatalf("Code %q, want %q from a %d-byte body", fail.Code, wantCode, len(long))
		}
	})
}
