// Package ratelimit implements request throttling for the edge gateway.
//
// Two algorithms are provided:
//
//   - TokenBucket: classic bucket with a refill rate and burst capacity,
//     refilled lazily on each call rather than by a background ticker.
//   - SlidingWindow: approximate sliding-window counter that blends the
//     previous and current fixed windows by elapsed fraction.
//
// Both satisfy the Limiter interface and can be keyed per client through
// KeyedLimiter, which also evicts idle keys. Middleware wraps an
// http.Handler and writes standard RateLimit-* response headers.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Clock abstracts time so tests can drive the limiters deterministically.
type Clock interface {
	Now() time.Time
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// ManualClock is a Clock that only moves when Advance is called.
type ManualClock struct {
	mu  sync.Mutex
	now time.Time
}

func NewManualClock(start time.Time) *ManualClock { return &ManualClock{now: start} }

func (c *ManualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *ManualClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// Decision is the outcome of a single Allow call.
type Decision struct {
	Allowed    bool
	Limit      int
	Remaining  int
	RetryAfter time.Duration
	ResetAfter time.Duration
}

// Limiter decides whether n units of work may proceed now.
type Limiter interface {
	AllowN(n int) Decision
}

// ErrLimited is returned by Wait when the context ends before a token is free.
var ErrLimited = errors.New("ratelimit: request limited")

// ---------------------------------------------------------------------------
// Token bucket
// ---------------------------------------------------------------------------

// TokenBucket refills at Rate tokens per second up to Burst tokens.
type TokenBucket struct {
	mu       sync.Mutex
	rate     float64
	burst    float64
	tokens   float64
	last     time.Time
	clock    Clock
	rejected uint64
}

// NewTokenBucket creates a full bucket.
func NewTokenBucket(rate float64, burst int, clock Clock) *TokenBucket {
	if clock == nil {
		clock = realClock{}
	}
	return &TokenBucket{
		rate:   rate,
		burst:  float64(burst),
		tokens: float64(burst),
		last:   clock.Now(),
		clock:  clock,
	}
}

func (b *TokenBucket) refill(now time.Time) {
	elapsed := now.Sub(b.last).Seconds()
	if elapsed <= 0 {
		return
	}
	b.tokens = math.Min(b.burst, b.tokens+elapsed*b.rate)
	b.last = now
}

// AllowN consumes n tokens if available.
func (b *TokenBucket) AllowN(n int) Decision {
	b.mu.Lock()
	defer b.mu.Unlock()

	now := b.clock.Now()
	b.refill(now)

	need := float64(n)
	d := Decision{Limit: int(b.burst)}
	if b.tokens >= need {
		b.tokens -= need
		d.Allowed = true
		d.Remaining = int(b.tokens)
		d.ResetAfter = b.timeToFull()
		return d
	}

	atomic.AddUint64(&b.rejected, 1)
	missing := need - b.tokens
	d.Remaining = int(b.tokens)
	d.RetryAfter = time.Duration(missing / b.rate * float64(time.Second))
	d.ResetAfter = b.timeToFull()
	return d
}

// Allow is shorthand for AllowN(1).
func (b *TokenBucket) Allow() bool { return b.AllowN(1).Allowed }

func (b *TokenBucket) timeToFull() time.Duration {
	if b.rate <= 0 {
		return 0
	}
	return time.Duration((b.burst - b.tokens) / b.rate * float64(time.Second))
}

// Wait blocks until n tokens are available or ctx is done.
func (b *TokenBucket) Wait(ctx context.Context, n int) error {
	if float64(n) > b.burst {
		return fmt.Errorf("ratelimit: requested %d exceeds burst %v", n, b.burst)
	}
	for {
		d := b.AllowN(n)
		if d.Allowed {
			return nil
		}
		timer := time.NewTimer(d.RetryAfter)
		select {
		case <-ctx.Done():
			return ErrLimited
		case <-timer.C:
		}
	}
}

// SetRate changes the refill rate, keeping accumulated tokens.
func (b *TokenBucket) SetRate(rate float64) {
	b.mu.Lock()
	b.refill(b.clock.Now())
	b.rate = rate
	b.mu.Unlock()
}

// Rejected returns how many calls were denied since creation.
func (b *TokenBucket) Rejected() uint64 { return atomic.LoadUint64(&b.rejected) }

// ---------------------------------------------------------------------------
// Sliding window
// ---------------------------------------------------------------------------

// SlidingWindow allows Limit events per Window using the weighted
// previous-window approximation.
type SlidingWindow struct {
	mu          sync.Mutex
	limit       int
	window      time.Duration
	clock       Clock
	windowStart time.Time
	current     int
	previous    int
}

func NewSlidingWindow(limit int, window time.Duration, clock Clock) *SlidingWindow {
	if clock == nil {
		clock = realClock{}
	}
	now := clock.Now()
	return &SlidingWindow{
		limit:       limit,
		window:      window,
		clock:       clock,
		windowStart: now.Truncate(window),
	}
}

func (s *SlidingWindow) advance(now time.Time) {
	start := now.Truncate(s.window)
	if start.Equal(s.windowStart) {
		return
	}
	if start.Sub(s.windowStart) == s.window {
		s.previous = s.current
	} else {
		// more than one full window passed: nothing carries over
		s.previous = 0
	}
	s.current = 0
	s.windowStart = start
}

func (s *SlidingWindow) estimate(now time.Time) float64 {
	elapsed := now.Sub(s.windowStart)
	weight := 1 - float64(elapsed)/float64(s.window)
	return float64(s.previous)*weight + float64(s.current)
}

func (s *SlidingWindow) AllowN(n int) Decision {
	s.mu.Lock()
	defer s.mu.Unlock()

	now := s.clock.Now()
	s.advance(now)

	est := s.estimate(now)
	d := Decision{Limit: s.limit}
	reset := s.windowStart.Add(s.window).Sub(now)
	d.ResetAfter = reset

	if est+float64(n) <= float64(s.limit) {
		s.current += n
		d.Allowed = true
		d.Remaining = s.limit - int(math.Ceil(est)) - n
		return d
	}
	d.Remaining = 0
	d.RetryAfter = reset
	return d
}

// ---------------------------------------------------------------------------
// Keyed limiter
// ---------------------------------------------------------------------------

// Factory builds a fresh limiter for a key the first time it is seen.
type Factory func(key string) Limiter

type entry struct {
	limiter  Limiter
	lastSeen int64 // unix nanos, updated atomically
}

// KeyedLimiter maintains one limiter per key with idle eviction.
type KeyedLimiter struct {
	mu      sync.RWMutex
	entries map[string]*entry
	factory Factory
	idleTTL time.Duration
	clock   Clock
	maxKeys int
}

func NewKeyedLimiter(factory Factory, idleTTL time.Duration, maxKeys int, clock Clock) *KeyedLimiter {
	if clock == nil {
		clock = realClock{}
	}
	return &KeyedLimiter{
		entries: make(map[string]*entry),
		factory: factory,
		idleTTL: idleTTL,
		clock:   clock,
		maxKeys: maxKeys,
	}
}

func (k *KeyedLimiter) get(key string) *entry {
	k.mu.RLock()
	e, ok := k.entries[key]
	k.mu.RUnlock()
	if ok {
		return e
	}

	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.entries) >= k.maxKeys {
		k.evictLocked(k.clock.Now())
	}
	e = &entry{limiter: k.factory(key)}
	k.entries[key] = e
	return e
}

// AllowN checks the limiter for key.
func (k *KeyedLimiter) AllowN(key string, n int) Decision {
	e := k.get(key)
	atomic.StoreInt64(&e.lastSeen, k.clock.Now().UnixNano())
	return e.limiter.AllowN(n)
}

// Evict removes entries idle longer than idleTTL and returns how many.
func (k *KeyedLimiter) Evict() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.evictLocked(k.clock.Now())
}

func (k *KeyedLimiter) evictLocked(now time.Time) int {
	cutoff := now.Add(-k.idleTTL).UnixNano()
	removed := 0
	for key, e := range k.entries {
		if atomic.LoadInt64(&e.lastSeen) < cutoff {
			delete(k.entries, key)
			removed++
		}
	}
	return removed
}

// Len reports the number of tracked keys.
func (k *KeyedLimiter) Len() int {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return len(k.entries)
}

// RunJanitor evicts idle keys every interval until ctx is cancelled.
func (k *KeyedLimiter) RunJanitor(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			k.Evict()
		}
	}
}

// ---------------------------------------------------------------------------
// HTTP middleware
// ---------------------------------------------------------------------------

// KeyFunc derives the limiter key from a request.
type KeyFunc func(r *http.Request) string

// ClientIP uses the first X-Forwarded-For entry, falling back to RemoteAddr.
func ClientIP(r *http.Request) string {
	if fwd := r.Header.Get("X-Forwarded-For"); fwd != "" {
		parts := strings.Split(fwd, ",")
		return strings.TrimSpace(parts[0])
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// APIKey keys by the X-Api-Key header, falling back to client IP.
func APIKey(r *http.Request) string {
	if k := r.Header.Get("X-Api-Key"); k != "" {
		return "key:" + k
	}
	return "ip:" + ClientIP(r)
}

// MiddlewareOptions configures Middleware.
type MiddlewareOptions struct {
	Key        KeyFunc
	Cost       func(r *http.Request) int
	Exempt     func(r *http.Request) bool
	OnLimited  func(w http.ResponseWriter, r *http.Request, d Decision)
	HeaderMode string // "draft" (RateLimit-*) or "legacy" (X-RateLimit-*)
}

// Middleware returns a wrapper enforcing kl on every non-exempt request.
func Middleware(kl *KeyedLimiter, opts MiddlewareOptions) func(http.Handler) http.Handler {
	if opts.Key == nil {
		opts.Key = ClientIP
	}
	if opts.Cost == nil {
		opts.Cost = func(*http.Request) int { return 1 }
	}
	if opts.OnLimited == nil {
		opts.OnLimited = defaultLimited
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if opts.Exempt != nil && opts.Exempt(r) {
				next.ServeHTTP(w, r)
				return
			}
			d := kl.AllowN(opts.Key(r), opts.Cost(r))
			writeHeaders(w, d, opts.HeaderMode)
			if !d.Allowed {
				opts.OnLimited(w, r, d)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

func writeHeaders(w http.ResponseWriter, d Decision, mode string) {
	prefix := "RateLimit-"
	if mode == "legacy" {
		prefix = "X-RateLimit-"
	}
	h := w.Header()
	h.Set(prefix+"Limit", strconv.Itoa(d.Limit))
	h.Set(prefix+"Remaining", strconv.Itoa(d.Remaining))
	h.Set(prefix+"Reset", strconv.Itoa(int(d.ResetAfter.Seconds())))
	if !d.Allowed {
		h.Set("Retry-After", strconv.Itoa(int(d.RetryAfter.Seconds())))
	}
}

func defaultLimited(w http.ResponseWriter, _ *http.Request, d Decision) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusTooManyRequests)
	fmt.Fprintf(w, `{"error":"rate limited","retry_after_ms":%d}`, d.RetryAfter.Milliseconds())
}

// ---------------------------------------------------------------------------
// Tiered configuration
// ---------------------------------------------------------------------------

// Tier describes a plan's allowance.
type Tier struct {
	Name   string
	Rate   float64 // tokens per second
	Burst  int
	Window time.Duration // if non-zero use sliding window with Rate*Window limit
}

// Tiers is keyed by plan name; lookups fall back to "free".
type Tiers map[string]Tier

// DefaultTiers are the plans sold on https://www.example.com/pricing.
var DefaultTiers = Tiers{
	"free":       {Name: "free", Rate: 1, Burst: 5},
	"standard":   {Name: "standard", Rate: 10, Burst: 40},
	"enterprise": {Name: "enterprise", Rate: 100, Burst: 400, Window: time.Minute},
}

// PlanResolver maps an API key to a plan name.
type PlanResolver interface {
	PlanFor(apiKey string) string
}

// TieredFactory builds per-key limiters according to the caller's plan.
func TieredFactory(tiers Tiers, resolver PlanResolver, clock Clock) Factory {
	return func(key string) Limiter {
		plan := "free"
		if strings.HasPrefix(key, "key:") && resolver != nil {
			plan = resolver.PlanFor(strings.TrimPrefix(key, "key:"))
		}
		t, ok := tiers[plan]
		if !ok {
			t = tiers["free"]
		}
		if t.Window > 0 {
			return NewSlidingWindow(int(t.Rate*t.Window.Seconds()), t.Window, clock)
		}
		return NewTokenBucket(t.Rate, t.Burst, clock)
	}
}

// staticResolver is a map-backed PlanResolver, handy for config files.
type staticResolver struct {
	plans map[string]string
}

func (s staticResolver) PlanFor(apiKey string) string {
	return s.plans[apiKey]
}

// ---------------------------------------------------------------------------
// Examples (normally in ratelimit_test.go; kept here for the design review)
// ---------------------------------------------------------------------------

type exampleT interface {
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
}

func exampleTokenBucketBurst(t exampleT) {
	clk := NewManualClock(time.Unix(1_700_000_000, 0))
	b := NewTokenBucket(2, 4, clk)

	for i := 0; i < 4; i++ {
		if !b.Allow() {
			t.Fatalf("call %d should be allowed within burst", i)
		}
	}
	if b.Allow() {
		t.Fatalf("fifth call should be rejected")
	}
	d := b.AllowN(1)
	if d.RetryAfter != 500*time.Millisecond {
		t.Errorf("retry after = %v, want 500ms", d.RetryAfter)
	}
	clk.Advance(500 * time.Millisecond)
	if !b.Allow() {
		t.Fatalf("should refill one token after 500ms")
	}
	if got := b.Rejected(); got != 2 {
		t.Errorf("rejected = %d, want 2", got)
	}
}

func exampleSlidingWindowCarryOver(t exampleT) {
	clk := NewManualClock(time.Unix(1_700_000_000, 0))
	s := NewSlidingWindow(10, time.Second, clk)

	for i := 0; i < 10; i++ {
		if !s.AllowN(1).Allowed {
			t.Fatalf("call %d should pass", i)
		}
	}
	// Quarter of the way into the next window 75% of the previous count
	// still applies, so only 2 more requests fit (7.5 + 2 <= 10).
	clk.Advance(1250 * time.Millisecond)
	allowed := 0
	for i := 0; i < 5; i++ {
		if s.AllowN(1).Allowed {
			allowed++
		}
	}
	if allowed != 2 {
		t.Errorf("allowed = %d, want 2", allowed)
	}

	clk.Advance(3 * time.Second)
	if !s.AllowN(10).Allowed {
		t.Errorf("after idle windows the full limit should be available")
	}
}

func exampleKeyedEviction(t exampleT) {
	clk := NewManualClock(time.Unix(1_700_000_000, 0))
	kl := NewKeyedLimiter(func(string) Limiter { return NewTokenBucket(1, 1, clk) }, time.Minute, 3, clk)

	kl.AllowN("a", 1)
	kl.AllowN("b", 1)
	clk.Advance(2 * time.Minute)
	kl.AllowN("c", 1)

	if n := kl.Evict(); n != 2 {
		t.Errorf("evicted %d, want 2", n)
	}
	if kl.Len() != 1 {
		t.Errorf("len = %d, want 1", kl.Len())
	}
}

type fakeResolver map[string]string

func (f fakeResolver) PlanFor(k string) string { return f[k] }

func exampleMiddleware(t exampleT) {
	clk := NewManualClock(time.Unix(1_700_000_000, 0))
	kl := NewKeyedLimiter(TieredFactory(DefaultTiers, fakeResolver{"abc": "standard"}, clk), time.Hour, 1000, clk)
	hits := 0
	h := Middleware(kl, MiddlewareOptions{Key: APIKey})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits++
		w.WriteHeader(http.StatusNoContent)
	}))

	rec := &recorder{header: http.Header{}}
	for i := 0; i < 41; i++ {
		req, _ := http.NewRequest(http.MethodGet, "https://api.example.com/v1/items", nil)
		req.Header.Set("X-Api-Key", "abc")
		rec.code = 0
		h.ServeHTTP(rec, req)
	}
	if hits != 40 {
		t.Errorf("hits = %d, want 40", hits)
	}
	if rec.code != http.StatusTooManyRequests {
		t.Errorf("last status = %d, want 429", rec.code)
	}
	if rec.header.Get("Retry-After") == "" {
		t.Errorf("Retry-After header missing")
	}
}

// recorder is a minimal ResponseWriter to avoid importing httptest here.
type recorder struct {
	header http.Header
	code   int
	body   strings.Builder
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.body.Write(b)
}
func (r *recorder) WriteHeader(code int) { r.code = code }

// RunExamples executes the examples above against t. Called from the
// package's real test file as a smoke test.
func RunExamples(t exampleT) {
	exampleTokenBucketBurst(t)
	exampleSlidingWindowCarryOver(t)
	exampleKeyedEviction(t)
	exampleMiddleware(t)
}

// ---------------------------------------------------------------------------
// Stats
// ---------------------------------------------------------------------------

// Snapshot is a point-in-time view used by the /debug/ratelimit endpoint.
type Snapshot struct {
	Keys      int            `json:"keys"`
	ByPlan    map[string]int `json:"by_plan"`
	Collected time.Time      `json:"collected"`
}

// Snapshot walks all entries; it holds the read lock for the whole walk,
// which is fine for the few thousand keys we see in practice.
func (k *KeyedLimiter) Snapshot(planOf func(key string) string) Snapshot {
	k.mu.RLock()
	defer k.mu.RUnlock()
	s := Snapshot{Keys: len(k.entries), ByPlan: map[string]int{}, Collected: k.clock.Now()}
	for key := range k.entries {
		s.ByPlan[planOf(key)]++
	}
	return s
}
