package server

import (
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
)

// rateLimiter is a token bucket per client address for writes: rate tokens a
// second, bursts of up to 2×rate (at least 5). Zero rate turns it off.
type rateLimiter struct {
	rate  float64
	burst float64

	mu      sync.Mutex
	buckets map[netip.Addr]*bucket
	swept   time.Time
	now     func() time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newRateLimiter(rate float64) *rateLimiter {
	return &rateLimiter{rate: rate, burst: math.Max(5, 2*rate), buckets: map[netip.Addr]*bucket{}, now: time.Now}
}

// allow takes a token for addr, or says how long until one is free. An
// IPv6 client is limited by its /64, the block one subscriber gets, so that
// hopping between its addresses does not multiply its rate.
func (l *rateLimiter) allow(addr netip.Addr) (bool, time.Duration) {
	if l.rate <= 0 {
		return true, 0
	}
	if addr = addr.Unmap(); addr.Is6() {
		addr = netip.PrefixFrom(addr, 64).Masked().Addr()
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute { // forget idle clients; bounded memory
		for a, b := range l.buckets {
			if now.Sub(b.at) > time.Minute {
				delete(l.buckets, a)
			}
		}
		l.swept = now
	}
	b := l.buckets[addr]
	if b == nil {
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[addr] = b
	}
	b.tokens = math.Min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.rate)
	b.at = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
}

func (s *Server) rateLimit(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if c.Request().Method == http.MethodOptions {
			return next(c)
		}
		ok, wait := s.limit.allow(s.clientAddr(c.Request()))
		if !ok {
			c.Response().Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
			return apiError(http.StatusTooManyRequests, "rate_limited", "too many writes from this address; try again shortly")
		}
		return next(c)
	}
}
