package lb

import (
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
)

// DefaultSessionName names the cookie or header when the policy has none.
const DefaultSessionName = "warren-session"

// SessionName is the cookie or header name of sp.
func SessionName(sp *warrenv1.SessionPersistence) string {
	if n := sp.GetSessionName(); n != "" {
		return n
	}
	return DefaultSessionName
}

// Session is a decoded session value: the endpoint and when the session
// began (for the absolute timeout) and was last used (idle timeout).
type Session struct {
	Addr            string
	Created, Last   time.Time
	AbsoluteTimeout time.Duration
	IdleTimeout     time.Duration
}

// EncodeSession renders a session value (URL-safe base64 of
// "addr|created|last" in Unix seconds).
func EncodeSession(addr string, created, last time.Time) string {
	raw := addr + "|" + strconv.FormatInt(created.Unix(), 10) + "|" + strconv.FormatInt(last.Unix(), 10)
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// ReadSession returns the session the request carries under sp, if it is
// well formed and within its timeouts at now.
func ReadSession(r *http.Request, sp *warrenv1.SessionPersistence, now time.Time) (Session, bool) {
	name := SessionName(sp)
	var v string
	if sp.GetType() == warrenv1.SessionPersistence_HEADER {
		v = r.Header.Get(name)
	} else if c, err := r.Cookie(name); err == nil {
		v = c.Value
	}
	if v == "" {
		return Session{}, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil {
		return Session{}, false
	}
	parts := strings.Split(string(raw), "|")
	if len(parts) != 3 {
		return Session{}, false
	}
	c, err1 := strconv.ParseInt(parts[1], 10, 64)
	l, err2 := strconv.ParseInt(parts[2], 10, 64)
	if err1 != nil || err2 != nil || parts[0] == "" {
		return Session{}, false
	}
	s := Session{Addr: parts[0], Created: time.Unix(c, 0), Last: time.Unix(l, 0),
		AbsoluteTimeout: time.Duration(sp.GetAbsoluteTimeoutMs()) * time.Millisecond,
		IdleTimeout:     time.Duration(sp.GetIdleTimeoutMs()) * time.Millisecond}
	if s.AbsoluteTimeout > 0 && now.Sub(s.Created) > s.AbsoluteTimeout {
		return Session{}, false
	}
	if s.IdleTimeout > 0 && now.Sub(s.Last) > s.IdleTimeout {
		return Session{}, false
	}
	return s, true
}

// WriteSession adds the session to a response: a Set-Cookie (Path=/,
// HttpOnly; Max-Age from the absolute timeout for permanent cookies) or
// a response header.
func WriteSession(h http.Header, sp *warrenv1.SessionPersistence, value string) {
	name := SessionName(sp)
	if sp.GetType() == warrenv1.SessionPersistence_HEADER {
		h.Set(name, value)
		return
	}
	c := &http.Cookie{Name: name, Value: value, Path: "/", HttpOnly: true}
	if sp.GetPermanent() && sp.GetAbsoluteTimeoutMs() > 0 {
		c.MaxAge = int(sp.GetAbsoluteTimeoutMs() / 1000)
		if c.MaxAge == 0 {
			c.MaxAge = 1
		}
	}
	h.Add("Set-Cookie", c.String())
}
