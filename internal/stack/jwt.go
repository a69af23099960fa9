package stack

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"time"
)

// signHS256 returns a compact JWS (a JWT) of claims signed with HMAC-SHA256.
func signHS256(secret []byte, claims map[string]any) string {
	payload, err := json.Marshal(claims)
	if err != nil {
		panic("stack: marshal JWT claims: " + err.Error())
	}
	enc := base64.RawURLEncoding
	input := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString(payload)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(input))
	return input + "." + enc.EncodeToString(mac.Sum(nil))
}

// UserToken returns an HS256 JWT for role "authenticated" with the given
// "sub" (the owner_id the RLS policies compare with), valid for an hour.
func (s *Stack) UserToken(sub string) string {
	now := time.Now()
	return signHS256(s.jwtSecret, map[string]any{
		"iss": "supabase", "role": "authenticated", "aud": "authenticated", "sub": sub,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	})
}
