package api_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"batteryswap/api"
)

func TestRegister(t *testing.T) {
	eachDialect(t, func(t *testing.T, e *apiEnv) {
		taken := e.email()
		e.register(t, taken)

		tests := []struct {
			name  string
			given string // e-mail of an existing account, if any
			when  any    // the body
			want  func(t *testing.T, r response)
		}{
			{
				name: "created",
				when: map[string]any{"email": "  New.Rider@Example.com ", "password": testPassword, "name": "New Rider"},
				want: func(t *testing.T, r response) {
					r.want(t, http.StatusCreated)
					u := object(t, r.Body, "user")
					wantUser(t, u)
					if got := str(t, u, "email"); got != "new.rider@example.com" {
						t.Errorf("email %q, want it normalised", got)
					}
					if got := str(t, u, "role"); got != "user" {
						t.Errorf("role %q, want user", got)
					}
					if str(t, u, "name") != "New Rider" {
						t.Errorf("name %v", u["name"])
					}
					if len(strings.Split(str(t, r.Body, "token"), ".")) != 3 {
						t.Errorf("token is not a JWT: %v", r.Body["token"])
					}
					if _, ok := u["password"]; ok {
						t.Errorf("user carries a password field")
					}
				},
			},
			{
				name: "every field invalid",
				when: map[string]any{"email": "not-an-email", "password": "short", "name": "  "},
				want: func(t *testing.T, r response) { wantFields(t, r, "email", "password", "name") },
			},
			{
				name: "missing fields",
				when: map[string]any{},
				want: func(t *testing.T, r response) { wantFields(t, r, "email", "password", "name") },
			},
			{
				name: "password of 7 characters",
				when: map[string]any{"email": e.email(), "password": "1234567", "name": "R"},
				want: func(t *testing.T, r response) { wantFields(t, r, "password") },
			},
			{
				// Limits count characters: 4 of them are 8 bytes here.
				name: "password of 4 two-byte characters",
				when: map[string]any{"email": e.email(), "password": "éééé", "name": "R"},
				want: func(t *testing.T, r response) { wantFields(t, r, "password") },
			},
			{
				name: "password of 8 two-byte characters, name of 200 Cyrillic letters",
				when: map[string]any{"email": e.email(), "password": "éééééééé", "name": strings.Repeat("Я", 200)},
				want: func(t *testing.T, r response) { r.want(t, http.StatusCreated) },
			},
			{
				name: "name of 201 Cyrillic letters",
				when: map[string]any{"email": e.email(), "password": testPassword, "name": strings.Repeat("Я", 201)},
				want: func(t *testing.T, r response) { wantFields(t, r, "name") },
			},
			{
				name: "email taken",
				when: map[string]any{"email": taken, "password": testPassword, "name": "Again"},
				want: func(t *testing.T, r response) { wantError(t, r, http.StatusConflict, "email_taken") },
			},
			{
				name: "email taken in other case",
				when: map[string]any{"email": strings.ToUpper(taken), "password": testPassword, "name": "Again"},
				want: func(t *testing.T, r response) { wantError(t, r, http.StatusConflict, "email_taken") },
			},
			{
				name: "unknown field",
				when: map[string]any{"email": e.email(), "password": testPassword, "name": "R", "role": "admin"},
				want: func(t *testing.T, r response) { wantError(t, r, http.StatusBadRequest, "invalid_request") },
			},
			{
				name: "malformed JSON",
				when: `{"email": "a@b.c", "password": `,
				want: func(t *testing.T, r response) { wantError(t, r, http.StatusBadRequest, "invalid_request") },
			},
			{
				name: "wrong type",
				when: map[string]any{"email": e.email(), "password": 12345678, "name": "R"},
				want: func(t *testing.T, r response) { wantError(t, r, http.StatusBadRequest, "invalid_request") },
			},
			{
				name: "not an object",
				when: `["a@b.c"]`,
				want: func(t *testing.T, r response) { wantError(t, r, http.StatusBadRequest, "invalid_request") },
			},
			{
				name: "two objects",
				when: `{"email":"a@b.c"} {"email":"d@e.f"}`,
				want: func(t *testing.T, r response) { wantError(t, r, http.StatusBadRequest, "invalid_request") },
			},
			{
				name: "empty body",
				when: "",
				want: func(t *testing.T, r response) { wantError(t, r, http.StatusBadRequest, "invalid_request") },
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				tt.want(t, e.do(t, http.MethodPost, "/api/v1/auth/register", "", tt.when))
			})
		}

		t.Run("a role cannot be chosen", func(t *testing.T) {
			r := e.do(t, http.MethodPost, "/api/v1/auth/register", "", map[string]any{"email": e.email(), "password": testPassword, "name": "R"}).
				want(t, http.StatusCreated)
			if got := str(t, object(t, r.Body, "user"), "role"); got != "user" {
				t.Fatalf("role %q, want user", got)
			}
		})
	})
}

func TestLogin(t *testing.T) {
	eachDialect(t, func(t *testing.T, e *apiEnv) {
		email := e.email()
		_, uid := e.register(t, email)
		// bcrypt reads 72 bytes: a longer password that starts like this one
		// must not sign in.
		longEmail, long := e.email(), strings.Repeat("p", 72)
		e.do(t, http.MethodPost, "/api/v1/auth/register", "", map[string]any{"email": longEmail, "password": long, "name": "L"}).
			want(t, http.StatusCreated)

		tests := []struct {
			name string
			when any
			want func(t *testing.T, r response)
		}{
			{
				name: "signed in",
				when: map[string]any{"email": email, "password": testPassword},
				want: func(t *testing.T, r response) {
					r.want(t, http.StatusOK)
					u := object(t, r.Body, "user")
					wantUser(t, u)
					if id(t, u, "id") != uid {
						t.Errorf("user id %v, want %d", u["id"], uid)
					}
					tok := str(t, r.Body, "token")
					ck := cookie(t, r, "bs_token")
					if ck.Value != tok {
						t.Errorf("cookie value differs from the token")
					}
					if !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode {
						t.Errorf("cookie HttpOnly=%v SameSite=%v, want HttpOnly and Lax", ck.HttpOnly, ck.SameSite)
					}
					if ck.Path != "/" {
						t.Errorf("cookie path %q, want /", ck.Path)
					}
					if ck.Secure {
						t.Errorf("a cookie over plain HTTP is Secure: the browser would never send it back")
					}
				},
			},
			{
				name: "e-mail in another case",
				when: map[string]any{"email": strings.ToUpper(email), "password": testPassword},
				want: func(t *testing.T, r response) { r.want(t, http.StatusOK) },
			},
			{
				name: "wrong password",
				when: map[string]any{"email": email, "password": testPassword + "x"},
				want: func(t *testing.T, r response) {
					wantError(t, r, http.StatusUnauthorized, "unauthorized")
					if r.Header.Get("Set-Cookie") != "" {
						t.Errorf("a failed login set a cookie: %s", r.Header.Get("Set-Cookie"))
					}
				},
			},
			{
				name: "password of 72 bytes",
				when: map[string]any{"email": longEmail, "password": long},
				want: func(t *testing.T, r response) { r.want(t, http.StatusOK) },
			},
			{
				name: "the same 72 bytes and more",
				when: map[string]any{"email": longEmail, "password": long + "x"},
				want: func(t *testing.T, r response) { wantError(t, r, http.StatusUnauthorized, "unauthorized") },
			},
			{
				name: "unknown account",
				when: map[string]any{"email": "nobody@example.com", "password": testPassword},
				want: func(t *testing.T, r response) { wantError(t, r, http.StatusUnauthorized, "unauthorized") },
			},
			{
				name: "missing fields",
				when: map[string]any{},
				want: func(t *testing.T, r response) { wantFields(t, r, "email", "password") },
			},
			{
				name: "unknown field",
				when: map[string]any{"email": email, "password": testPassword, "remember": true},
				want: func(t *testing.T, r response) { wantError(t, r, http.StatusBadRequest, "invalid_request") },
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				tt.want(t, e.do(t, http.MethodPost, "/api/v1/auth/login", "", tt.when))
			})
		}
		t.Run("behind a proxy that terminates TLS", func(t *testing.T) {
			r := e.do(t, http.MethodPost, "/api/v1/auth/login", "", map[string]any{"email": email, "password": testPassword},
				"X-Forwarded-Proto", "https").want(t, http.StatusOK)
			if !cookie(t, r, "bs_token").Secure {
				t.Errorf("the browser came over HTTPS, yet the session cookie is not Secure")
			}
		})
	})
}

func TestLogout(t *testing.T) {
	eachDialect(t, func(t *testing.T, e *apiEnv) {
		tok, _ := e.newUser(t)

		r := e.do(t, http.MethodPost, "/api/v1/auth/logout", tok, nil).want(t, http.StatusNoContent)
		if len(r.Raw) != 0 {
			t.Errorf("204 with a body: %s", r.Raw)
		}
		ck := cookie(t, r, "bs_token")
		if ck.Value != "" || ck.MaxAge >= 0 {
			t.Errorf("cookie not cleared: value %q MaxAge %d", ck.Value, ck.MaxAge)
		}
		if !ck.HttpOnly {
			t.Errorf("clearing cookie is not HttpOnly")
		}

		wantError(t, e.do(t, http.MethodPost, "/api/v1/auth/logout", "", nil), http.StatusUnauthorized, "unauthorized")
	})
}

func TestMe(t *testing.T) {
	eachDialect(t, func(t *testing.T, e *apiEnv) {
		email := e.email()
		tok, uid := e.register(t, email)
		admin, adminID := e.newAdmin(t)

		tests := []struct {
			name    string
			given   string   // token in the Authorization header
			when    []string // path suffix and extra headers
			wantID  int64    // 0: want 401
			wantRol string
		}{
			{name: "bearer", given: tok, when: []string{""}, wantID: uid, wantRol: "user"},
			{name: "admin", given: admin, when: []string{""}, wantID: adminID, wantRol: "admin"},
			{name: "cookie", when: []string{"", "Cookie", "bs_token=" + tok}, wantID: uid, wantRol: "user"},
			// A REST route refuses a token in the URL (stream routes only).
			{name: "query parameter", when: []string{"?access_token=" + tok}},
			{name: "no token", when: []string{""}},
			{name: "garbage bearer", given: "garbage", when: []string{""}},
			{name: "garbage cookie", when: []string{"", "Cookie", "bs_token=garbage"}},
			{name: "garbage query parameter", when: []string{"?access_token=garbage"}},
			{name: "not a bearer scheme", when: []string{"", "Authorization", "Basic " + tok}},
			{name: "bearer scheme in lower case", when: []string{"", "Authorization", "bearer " + tok}, wantID: uid, wantRol: "user"},
			{name: "bearer without a token", when: []string{"", "Authorization", "Bearer "}},
			{name: "stale cookie, good query parameter", when: []string{"?access_token=" + tok, "Cookie", "bs_token=garbage"}},
			{name: "good cookie, stray query parameter", when: []string{"?access_token=garbage", "Cookie", "bs_token=" + tok}, wantID: uid, wantRol: "user"},
			{name: "expired", given: e.forge(t, "test", uid, -time.Minute, nil), when: []string{""}},
			{name: "other secret", given: e.forge(t, "other", uid, time.Hour, nil), when: []string{""}},
			{name: "unknown user", given: e.forge(t, "test", uid+1000, time.Hour, nil), when: []string{""}},
			{name: "valid token of this user", given: e.forge(t, "test", uid, time.Hour, nil), when: []string{""}, wantID: uid, wantRol: "user"},
			{name: "no audience", given: e.forge(t, "test", uid, time.Hour, map[string]any{"aud": nil}), when: []string{""}},
			{name: "another deployment", given: e.forge(t, "test", uid, time.Hour, map[string]any{"aud": "another-deployment"}), when: []string{""}},
			{name: "no token version", given: e.forge(t, "test", uid, time.Hour, map[string]any{"ver": nil}), when: []string{""}},
			{name: "another token version", given: e.forge(t, "test", uid, time.Hour, map[string]any{"ver": 12345}), when: []string{""}},
			{name: "a role claim is not believed", given: e.forge(t, "test", uid, time.Hour, map[string]any{"role": "admin"}), when: []string{""}, wantID: uid, wantRol: "user"},
			{name: "alg none", given: unsignedToken(t, uid), when: []string{""}},
			{name: "tampered", given: tamper(tok), when: []string{""}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := e.do(t, http.MethodGet, "/api/v1/me"+tt.when[0], tt.given, nil, tt.when[1:]...)
				if tt.wantID == 0 {
					wantError(t, r, http.StatusUnauthorized, "unauthorized")
					return
				}
				r.want(t, http.StatusOK)
				wantUser(t, r.Body)
				if id(t, r.Body, "id") != tt.wantID || r.Body["role"] != tt.wantRol {
					t.Fatalf("me = %s, want id %d role %s", r.Raw, tt.wantID, tt.wantRol)
				}
			})
		}
		t.Run("email", func(t *testing.T) {
			r := e.do(t, http.MethodGet, "/api/v1/me", tok, nil).want(t, http.StatusOK)
			if str(t, r.Body, "email") != email {
				t.Fatalf("email %v, want %s", r.Body["email"], email)
			}
		})
	})
}

// A session cookie that no longer verifies (JWT_SECRET rotated, or new
// after a restart by default) makes the caller anonymous on public routes
// instead of locking them out, and every answer to it clears the cookie, so
// the browser recovers by itself; routes that need a user still answer 401.
func TestStaleSessionCookie(t *testing.T) {
	e := newAPIEnv(t, "sqlite", nil)
	stale := "bs_token=" + e.forge(t, "a secret of before the restart", 1, time.Hour, nil)
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/stream/stations", http.StatusOK},
		{http.MethodGet, "/stream/stations?format=ndjson", http.StatusOK},
		{http.MethodGet, "/stream/stations?transport=poll&timeout=1", http.StatusOK},
		{http.MethodGet, "/api/v1/me", http.StatusUnauthorized},
		{http.MethodPost, "/api/v1/auth/logout", http.StatusUnauthorized},
	} {
		status, header := e.head(t, tc.method, tc.path, "Cookie", stale)
		if status != tc.want {
			t.Errorf("%s %s with a stale cookie: %d, want %d", tc.method, tc.path, status, tc.want)
		}
		ck := cookie(t, response{Header: header}, api.CookieName)
		if ck.Value != "" || ck.MaxAge >= 0 {
			t.Errorf("%s %s: cookie not cleared: value %q MaxAge %d", tc.method, tc.path, ck.Value, ck.MaxAge)
		}
	}
}

// cookie returns the named cookie an answer sets.
func cookie(t *testing.T, r response, name string) *http.Cookie {
	t.Helper()
	for _, c := range (&http.Response{Header: r.Header}).Cookies() {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no %s cookie in %v", name, r.Header.Values("Set-Cookie"))
	return nil
}

// forge makes an access token like the server's for a user of e, with a
// chosen secret and lifetime (negative: already expired): its audience is
// e's deployment and its version the account's, unless change replaces a
// claim (nil removes it). An unknown user gets version 0.
func (e *apiEnv) forge(t *testing.T, secret string, userID int64, ttl time.Duration, change map[string]any) string {
	t.Helper()
	ctx := context.Background()
	dep, err := e.store.DeploymentID(ctx)
	if err != nil {
		t.Fatalf("deployment id: %v", err)
	}
	var ver int64
	if u, err := e.store.FindUserByID(ctx, userID); err == nil {
		ver = u.TokenVersion
	}
	now := time.Now()
	claims := jwt.MapClaims{
		"sub": strconv.FormatInt(userID, 10), "iss": "batteryswap", "aud": dep, "ver": ver, "role": "user",
		"iat": now.Add(-2 * time.Hour).Unix(), "exp": now.Add(ttl).Unix(),
	}
	for k, v := range change {
		if v == nil {
			delete(claims, k)
		} else {
			claims[k] = v
		}
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return tok
}

func unsignedToken(t *testing.T, userID int64) string {
	t.Helper()
	claims := jwt.RegisteredClaims{Subject: strconv.FormatInt(userID, 10), Issuer: "batteryswap", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodNone, claims).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return tok
}

// tamper changes one character in the middle of a token's signature.
func tamper(tok string) string {
	i := strings.LastIndexByte(tok, '.') + 10
	c := byte('A')
	if tok[i] == 'A' {
		c = 'B'
	}
	return tok[:i] + string(c) + tok[i+1:]
}
