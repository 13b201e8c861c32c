package api

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/labstack/echo/v4"
	"golang.org/x/crypto/bcrypt"

	"batteryswap/models"
)

// CookieName is the session cookie that login sets.
const CookieName = "bs_token"

const userKey = "user"

func (s *Server) registerAuthRoutes(g *echo.Group) {
	limit := s.rateLimit("auth", s.cfg.AuthRateLimit, func(c echo.Context) string { return c.RealIP() })
	g.POST("/auth/register", s.handleRegister, limit)
	g.POST("/auth/login", s.handleLogin, limit)
	g.POST("/auth/logout", s.handleLogout, s.requireUser)
	g.POST("/auth/logout-all", s.handleLogoutAll, s.requireUser)
	g.GET("/me", s.handleMe, s.requireUser)
}

type registerRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
	Name     string `json:"name"`
}

type authResponse struct {
	User  *models.User `json:"user"`
	Token string       `json:"token"`
}

func (s *Server) handleRegister(c echo.Context) error {
	var req registerRequest
	if err := bindJSON(c, &req, false); err != nil {
		return err
	}
	req.Email = models.NormalizeEmail(req.Email)
	req.Name = strings.TrimSpace(req.Name)
	if err := models.ValidateRegistration(req.Email, req.Password, req.Name); err != nil {
		return err
	}
	hash, err := HashPassword(req.Password, s.cfg.BcryptCost)
	if err != nil {
		return err
	}
	u, err := s.store.CreateUser(c.Request().Context(), req.Email, req.Name, hash, models.RoleUser)
	if err != nil {
		return err
	}
	return s.issue(c, http.StatusCreated, u)
}

type loginRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

func (s *Server) handleLogin(c echo.Context) error {
	var req loginRequest
	if err := bindJSON(c, &req, false); err != nil {
		return err
	}
	f := map[string]string{}
	if req.Email == "" {
		f["email"] = "is required"
	}
	if req.Password == "" {
		f["password"] = "is required"
	}
	if err := models.ValidationError(f); err != nil {
		return err
	}
	bad := models.Errorf(models.CodeUnauthorized, "wrong e-mail or password")
	if len(req.Password) > models.MaxPasswordBytes {
		// bcrypt would compare only the first 72 bytes, and no account
		// has a longer password (registration refuses it).
		return bad
	}
	u, err := s.store.FindUserByEmail(c.Request().Context(), req.Email)
	if models.IsCode(err, models.CodeNotFound) {
		// Spend the same time as a real check, so timing does not tell
		// which addresses have accounts.
		_ = bcrypt.CompareHashAndPassword(s.dummyHash, []byte(req.Password))
		return bad
	}
	if err != nil {
		return err
	}
	if bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(req.Password)) != nil {
		return bad
	}
	return s.issue(c, http.StatusOK, u)
}

// dummyHashFor returns a hash at the configured cost, compared against on a
// login for an unknown account so that it takes as long as a real check.
func dummyHashFor(cost int) []byte {
	h, _ := HashPassword("not a real password", cost)
	return []byte(h)
}

// issue signs a token for u, sets the session cookie and answers {user, token}.
// The cookie is Secure when the browser came over HTTPS, to this server or
// to the proxy that terminates TLS for it (X-Forwarded-Proto: https). A
// client that claims https over plain HTTP only loses its own cookie.
func (s *Server) issue(c echo.Context, status int, u *models.User) error {
	tok, exp, err := s.signToken(c.Request().Context(), u)
	if err != nil {
		return err
	}
	c.SetCookie(&http.Cookie{Name: CookieName, Value: tok, Path: "/", Expires: exp, HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Secure: c.Scheme() == "https"})
	return c.JSON(status, authResponse{User: u, Token: tok})
}

func (s *Server) handleLogout(c echo.Context) error {
	s.clearCookie(c)
	return c.NoContent(http.StatusNoContent)
}

// handleLogoutAll ends every token of the caller, on every instance: the
// account's token version goes up, and a token carries the version it was
// signed with. This instance forgets the account at once; the others read
// it again within the account cache's lifetime.
func (s *Server) handleLogoutAll(c echo.Context) error {
	u := currentUser(c)
	if err := s.store.BumpTokenVersion(c.Request().Context(), u.ID); err != nil {
		return err
	}
	s.accounts.forget(u.ID)
	s.clearCookie(c)
	return c.NoContent(http.StatusNoContent)
}

// clearCookie tells the browser to drop the session cookie.
func (s *Server) clearCookie(c echo.Context) {
	c.SetCookie(&http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1, Expires: time.Unix(0, 0),
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: c.Scheme() == "https"})
}

// handleMe answers the caller's account, as authenticate read it (at most
// the account cache's lifetime ago).
func (s *Server) handleMe(c echo.Context) error {
	return c.JSON(http.StatusOK, currentUser(c))
}

// HashPassword hashes a password with bcrypt at cost (default cost when 0).
func HashPassword(password string, cost int) (string, error) {
	if cost == 0 {
		cost = bcrypt.DefaultCost
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	return string(h), err
}

// tokenClaims are what an access token says: who (sub), for which
// deployment (aud: the database's DeploymentID) and with which token
// version of the account (ver). The role is not taken from it: each
// request reads the account (accounts), so a token whose account is gone,
// signed out everywhere or given another role stops working within seconds
// (a role change raises the token version too).
//
// Role is still signed in, for the instances of the version before tokens
// were bound (which authorise by it) during a rolling upgrade; this
// version ignores it.
type tokenClaims struct {
	Role    models.Role `json:"role"`
	Version int64       `json:"ver"`
	jwt.RegisteredClaims
}

func (s *Server) signToken(ctx context.Context, u *models.User) (string, time.Time, error) {
	dep, err := s.deployment.get(ctx)
	if err != nil {
		return "", time.Time{}, err
	}
	now := time.Now()
	exp := now.Add(s.cfg.TokenTTL)
	claims := tokenClaims{Role: u.Role, Version: u.TokenVersion, RegisteredClaims: jwt.RegisteredClaims{
		Subject:   strconv.FormatInt(u.ID, 10),
		Audience:  jwt.ClaimStrings{dep},
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(exp),
		Issuer:    "batteryswap",
	}}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(s.cfg.JWTSecret)
	return tok, exp, err
}

// authenticate resolves the request's user from its access token: the
// Authorization header, then the session cookie, then, on stream routes
// only, the access_token query parameter (EventSource and WebSocket cannot
// set headers). It returns (nil, nil) when the request carries none,
// unauthorized when the token it presents is bad.
//
// A session cookie that no longer verifies (signed with a rotated or, by
// default, per-start JWT_SECRET, expired, or signed out everywhere) is not
// the caller's choice: the browser keeps sending it. It counts as no
// token, so public routes still answer, and the response clears it, so a
// browser recovers by itself.
//
// A token in a URL ends up in proxy logs, browser history and Referer
// headers, so REST routes refuse it (401, saying where the token goes)
// rather than ignore it: a client that relies on it learns at once.
func (s *Server) authenticate(c echo.Context) (*models.User, error) {
	r := c.Request()
	ctx := r.Context()
	if h := r.Header.Get(echo.HeaderAuthorization); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
			return nil, models.Errorf(models.CodeUnauthorized, "the Authorization header must be \"Bearer TOKEN\"")
		}
		return s.verify(ctx, strings.TrimSpace(tok))
	}
	if ck, err := r.Cookie(CookieName); err == nil && ck.Value != "" {
		u, err := s.verify(ctx, ck.Value)
		if err == nil {
			return u, nil
		}
		if !models.IsCode(err, models.CodeUnauthorized) {
			return nil, err // the database, not the cookie: the cookie may be good
		}
		s.clearCookie(c)
	}
	if tok := r.URL.Query().Get("access_token"); tok != "" {
		if !isStreamPath(r.URL.Path) {
			return nil, models.Errorf(models.CodeUnauthorized,
				"the access_token query parameter is accepted on stream routes only; send the token in an Authorization: Bearer header")
		}
		return s.verify(ctx, tok)
	}
	return nil, nil
}

// verify checks a token's signature, expiry, issuer and deployment, then
// its account: the account must exist and have the token's version. It
// returns the account, whose role is what the request may do.
func (s *Server) verify(ctx context.Context, raw string) (*models.User, error) {
	dep, err := s.deployment.get(ctx)
	if err != nil {
		return nil, err
	}
	var claims tokenClaims
	_, err = jwt.ParseWithClaims(raw, &claims, func(*jwt.Token) (any, error) { return s.cfg.JWTSecret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}), jwt.WithExpirationRequired(),
		jwt.WithIssuer("batteryswap"), jwt.WithAudience(dep))
	if err != nil {
		return nil, models.Errorf(models.CodeUnauthorized, "the access token is invalid or expired")
	}
	id, err := strconv.ParseInt(claims.Subject, 10, 64)
	if err != nil || id <= 0 {
		return nil, models.Errorf(models.CodeUnauthorized, "the access token is invalid")
	}
	u, err := s.accounts.get(ctx, id)
	if models.IsCode(err, models.CodeNotFound) {
		return nil, models.Errorf(models.CodeUnauthorized, "the account of this token no longer exists")
	}
	if err != nil {
		return nil, err
	}
	if u.TokenVersion != claims.Version {
		return nil, models.Errorf(models.CodeUnauthorized, "the access token was revoked (signed out everywhere); sign in again")
	}
	return u, nil
}

// optionalUser attaches the caller when a valid token is present.
func (s *Server) optionalUser(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		u, err := s.authenticate(c)
		if err != nil {
			return err
		}
		if u != nil {
			c.Set(userKey, u)
		}
		return next(c)
	}
}

// requireUser answers 401 without a valid token.
func (s *Server) requireUser(next echo.HandlerFunc) echo.HandlerFunc {
	return s.optionalUser(func(c echo.Context) error {
		if currentUser(c) == nil {
			return models.Errorf(models.CodeUnauthorized, "sign in first")
		}
		return next(c)
	})
}

// requireAdmin answers 401 without a token and 403 for a non-admin.
func (s *Server) requireAdmin(next echo.HandlerFunc) echo.HandlerFunc {
	return s.requireUser(func(c echo.Context) error {
		if !currentUser(c).IsAdmin() {
			return models.Errorf(models.CodeForbidden, "this needs an operator account")
		}
		return next(c)
	})
}

func currentUser(c echo.Context) *models.User {
	u, _ := c.Get(userKey).(*models.User)
	return u
}
