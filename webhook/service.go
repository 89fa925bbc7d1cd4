package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/assent/assent/store"
)

// Ledger is what the webhook service needs of the ledger.
type Ledger interface {
	store.Outbox
	store.Webhooks
}

// Schedule is API.md's retry schedule: the waits after the first, second, …
// failed attempt; after the last the delivery is failed.
var Schedule = []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour,
	5 * time.Hour, 10 * time.Hour, 10 * time.Hour}

// Timeout is how long a receiver has to answer.
const Timeout = 10 * time.Second

// pollEvery is how often the sender looks for due deliveries it was not
// woken for (queued by another replica) and re-reads the endpoints.
const pollEvery = 5 * time.Second

// Options configure a Service.
type Options struct {
	// AllowPrivate lets endpoints point at loopback, private and link-local
	// addresses (--webhook-allow-private): tests, and receivers on the
	// same network.
	AllowPrivate bool
	Log          *slog.Logger
	// Schedule replaces the retry schedule (nil = Schedule): tests only,
	// so that a retry comes in milliseconds rather than seconds.
	Schedule []time.Duration

	resolver *net.Resolver
}

// Service manages the endpoints and delivers their events.
type Service struct {
	st   Ledger
	opts Options
	log  *slog.Logger

	eps    atomic.Pointer[[]store.WebhookEndpoint] // cache for the writer's fan-out
	client *http.Client
	wake   chan struct{}

	deliveries *prometheus.CounterVec
	duration   prometheus.Histogram
	queued     prometheus.Collector
}

// New loads the endpoints. Run delivers.
func New(ctx context.Context, st Ledger, opts Options) (*Service, error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Schedule == nil {
		opts.Schedule = Schedule
	}
	s := &Service{st: st, opts: opts, log: opts.Log, wake: make(chan struct{}, 1)}
	dialer := &net.Dialer{Timeout: Timeout, KeepAlive: 30 * time.Second}
	if !opts.AllowPrivate {
		dialer.Control = dialControl
	}
	s.client = &http.Client{
		Timeout: Timeout,
		Transport: &http.Transport{
			Proxy:                 nil, // a proxy would dial for us, past the address check
			DialContext:           dialer.DialContext,
			TLSHandshakeTimeout:   Timeout,
			ResponseHeaderTimeout: Timeout,
			MaxIdleConnsPerHost:   2,
			IdleConnTimeout:       90 * time.Second,
			ForceAttemptHTTP2:     true,
		},
		// No redirect is followed: a 3xx is a failed attempt, so a receiver
		// cannot bounce a delivery to an address it may not reach.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	s.deliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "assent_webhook_attempts_total",
		Help: "Webhook delivery attempts by result: delivered, retry (failed, will be tried again), failed (given up).",
	}, []string{"result"})
	s.duration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "assent_webhook_attempt_duration_seconds", Help: "Time from sending a webhook to its answer or failure.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	})
	s.queued = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "assent_webhook_pending", Help: "Webhook deliveries waiting for their next attempt.",
	}, func() float64 {
		c, err := st.OutboxCounts(context.Background(), Kind)
		if err != nil {
			return -1
		}
		return float64(c[store.OutboxQueued])
	})
	if err := s.reload(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Collectors are the service's Prometheus series.
func (s *Service) Collectors() []prometheus.Collector {
	return []prometheus.Collector{s.deliveries, s.duration, s.queued}
}

func (s *Service) reload(ctx context.Context) error {
	eps, err := s.st.Webhooks(ctx)
	if err != nil {
		return fmt.Errorf("webhook endpoints: %w", err)
	}
	s.eps.Store(&eps)
	return nil
}

func (s *Service) endpoints() []store.WebhookEndpoint {
	if p := s.eps.Load(); p != nil {
		return *p
	}
	return nil
}

// Wake makes the sender look for due deliveries now; call it after a
// commit that queued some (Queued does).
func (s *Service) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Queued wakes the sender when items holds webhook deliveries.
func (s *Service) Queued(items []store.OutboxItem) {
	for _, it := range items {
		if it.Kind == Kind {
			s.Wake()
			return
		}
	}
}

// RecordOutbox returns the AppendOptions.Outbox function that fans a
// stored record's events (RecordEvents) out to the subscribed endpoints,
// in the record's own transaction. unsubscribeURL, when set, gives the
// subject's unsubscribe link for the payload; it must not touch storage.
func (s *Service) RecordOutbox(unsubscribeURL func(store.Record) string) func(store.Record) ([]store.OutboxItem, error) {
	eps := s.endpoints()
	return func(rec store.Record) ([]store.OutboxItem, error) {
		if len(eps) == 0 {
			return nil, nil
		}
		var items []store.OutboxItem
		for _, typ := range RecordEvents(rec) {
			data := RecordData{Record: rec}
			if unsubscribeURL != nil && rec.Email != "" {
				data.UnsubscribeURL = unsubscribeURL(rec)
			}
			its, err := fanOut(eps, typ, rec.Site, []string{rec.Site}, rec.RecordedAt, data)
			if err != nil {
				return nil, err
			}
			items = append(items, its...)
		}
		return items, nil
	}
}

// EraseOptions queues subject.erased, with what every recipient needs to
// erase the person too, in the erasure's own transaction.
func (s *Service) EraseOptions() store.EraseOptions {
	eps := s.endpoints()
	return store.EraseOptions{Outbox: func(e store.ErasedSubject) ([]store.OutboxItem, error) {
		return fanOut(eps, SubjectErased, "", e.Sites, e.ErasedAt, e)
	}}
}

// Input errors of the admin functions, for the HTTP layer to map.
var (
	ErrUnknownEvent = errors.New("unknown event type")
	ErrNoEvents     = errors.New("at least one event type")
	ErrNotFailed    = errors.New("only a failed delivery can be retried")
)

// Create makes an endpoint with a new secret and returns it with the
// secret (the only time it is shown). A bad URL gives a *URLError.
func (s *Service) Create(ctx context.Context, rawURL string, events, sites []string) (store.WebhookEndpoint, error) {
	if len(events) == 0 {
		return store.WebhookEndpoint{}, ErrNoEvents
	}
	seen := map[string]bool{}
	var evs []string
	for _, e := range events {
		if !slices.Contains(Types, e) {
			return store.WebhookEndpoint{}, fmt.Errorf("%w %q: want one of %v", ErrUnknownEvent, e, Types)
		}
		if !seen[e] {
			seen[e] = true
			evs = append(evs, e)
		}
	}
	if err := CheckURL(ctx, rawURL, s.opts.AllowPrivate, s.opts.resolver); err != nil {
		return store.WebhookEndpoint{}, err
	}
	id := "wh_" + newEventID()[4:]
	ep, err := s.st.CreateWebhook(ctx, store.WebhookEndpoint{ID: id, URL: rawURL, Events: evs, Sites: sites, Secret: NewSecret()})
	if err != nil {
		return store.WebhookEndpoint{}, err
	}
	return ep, s.reload(ctx)
}

// List returns the endpoints without their secrets.
func (s *Service) List(ctx context.Context) ([]store.WebhookEndpoint, error) {
	eps, err := s.st.Webhooks(ctx)
	for i := range eps {
		eps[i].Secret = ""
	}
	if eps == nil {
		eps = []store.WebhookEndpoint{}
	}
	return eps, err
}

// Delete removes an endpoint (store.ErrNotFound for an unknown one).
func (s *Service) Delete(ctx context.Context, id string) error {
	if err := s.st.DeleteWebhook(ctx, id); err != nil {
		return err
	}
	return s.reload(ctx)
}

// Test queues a webhook.test event to one endpoint and returns its
// delivery.
func (s *Service) Test(ctx context.Context, id string) (Delivery, error) {
	ep, err := s.st.Webhook(ctx, id)
	if err != nil {
		return Delivery{}, err
	}
	if err := s.reload(ctx); err != nil { // made by another replica: send it now
		return Delivery{}, err
	}
	now := time.Now().UTC()
	ep.Events = []string{TestEvent}
	items, err := fanOut([]store.WebhookEndpoint{ep}, TestEvent, "", nil, now,
		map[string]string{"endpoint_id": ep.ID, "message": "a test event from Assent"})
	if err != nil {
		return Delivery{}, err
	}
	items, err = s.st.Enqueue(ctx, items...)
	if err != nil {
		return Delivery{}, err
	}
	s.Queued(items)
	if len(items) != 1 {
		return Delivery{}, errors.New("test event not queued")
	}
	return delivery(items[0]), nil
}

// Delivery is one event's delivery to one endpoint, as admins see it.
type Delivery struct {
	ID             string    `json:"id"`
	EventID        string    `json:"event_id"`
	Type           string    `json:"type"`
	Status         string    `json:"status"` // pending, delivered, failed
	Attempts       int       `json:"attempts"`
	LastStatusCode int       `json:"last_status_code"`
	LastError      string    `json:"last_error"`
	CreatedAt      time.Time `json:"created_at"`
	NextAttemptAt  time.Time `json:"next_attempt_at,omitzero"`
	DeliveredAt    time.Time `json:"delivered_at,omitzero"`
}

func delivery(it store.OutboxItem) Delivery {
	d := Delivery{ID: it.ID, Attempts: it.Attempts, LastStatusCode: it.LastCode, LastError: it.LastError,
		CreatedAt: it.CreatedAt, NextAttemptAt: it.NextAttemptAt}
	var p payload
	if it.Payload != nil && json.Unmarshal(it.Payload, &p) == nil {
		d.EventID, d.Type = p.EventID, p.Type
	}
	switch it.State {
	case store.OutboxQueued:
		d.Status = "pending"
	case store.OutboxSent:
		d.Status, d.DeliveredAt = "delivered", it.DoneAt
	default:
		d.Status = "failed"
	}
	return d
}

// Deliveries returns an endpoint's deliveries, newest first.
func (s *Service) Deliveries(ctx context.Context, id string, limit int) ([]Delivery, error) {
	if _, err := s.st.Webhook(ctx, id); err != nil {
		return nil, err
	}
	items, err := s.st.OutboxList(ctx, store.OutboxQuery{Kind: Kind, Key: id, Limit: limit})
	if err != nil {
		return nil, err
	}
	out := make([]Delivery, 0, len(items))
	for _, it := range items {
		out = append(out, delivery(it))
	}
	return out, nil
}

// Retry queues a failed delivery of an endpoint again, due now.
func (s *Service) Retry(ctx context.Context, id, deliveryID string) (Delivery, error) {
	it, err := s.st.OutboxItemByID(ctx, deliveryID)
	if err != nil {
		return Delivery{}, err
	}
	if it.Kind != Kind || it.Key != id {
		return Delivery{}, store.ErrNotFound
	}
	if it.State != store.OutboxFailed {
		return Delivery{}, ErrNotFailed
	}
	it, err = s.st.OutboxRetry(ctx, deliveryID)
	if err != nil {
		return Delivery{}, err
	}
	s.Wake()
	return delivery(it), nil
}

// Run delivers due events until ctx is done: one goroutine per endpoint
// with a delivery in flight, so a slow or dead endpoint holds up only its
// own queue. Each endpoint's next delivery is the head of its queue
// (store.OutboxHead), read in one step whatever the backlog. Deliveries in
// flight when ctx ends are not recorded and are sent again after a restart
// (at least once).
func (s *Service) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	busy := map[string]bool{}
	done := make(chan string)
	timer := time.NewTimer(0)
	defer timer.Stop()
	lastReload := time.Now()
	for {
		if time.Since(lastReload) >= pollEvery {
			if err := s.reload(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("webhook endpoints", "err", err.Error())
			}
			lastReload = time.Now()
		}
		now := time.Now()
		var next time.Time
		for _, ep := range s.endpoints() {
			if busy[ep.ID] {
				continue
			}
			it, ok, err := s.st.OutboxHead(ctx, Kind, ep.ID)
			if err != nil && ctx.Err() == nil {
				s.log.Error("webhook outbox", "err", err.Error())
			}
			if !ok {
				continue
			}
			if it.NextAttemptAt.After(now) {
				if next.IsZero() || it.NextAttemptAt.Before(next) {
					next = it.NextAttemptAt
				}
				continue
			}
			busy[ep.ID] = true
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.deliver(ctx, it)
				select {
				case done <- it.Key:
				case <-ctx.Done():
				}
			}()
		}
		wait := pollEvery
		if !next.IsZero() {
			wait = min(max(time.Until(next), time.Millisecond), pollEvery)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case key := <-done:
			delete(busy, key)
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// deliver makes one attempt at one delivery and records it.
func (s *Service) deliver(ctx context.Context, it store.OutboxItem) {
	var a store.Attempt
	var p payload
	ep, ok := s.endpoint(ctx, it.Key)
	switch {
	case it.Payload == nil || json.Unmarshal(it.Payload, &p) != nil:
		a.Err = "erased" // erasure blanked it after it was handed out
	case !ok:
		a.Err = "endpoint deleted"
	default:
		start := time.Now()
		a = s.post(ctx, ep, p)
		if ctx.Err() != nil {
			return // shutting down: not an attempt; sent again after restart
		}
		s.duration.Observe(time.Since(start).Seconds())
		if a.Err != "" && it.Attempts < len(s.opts.Schedule) {
			a.Retry = time.Now().Add(s.opts.Schedule[it.Attempts])
		}
	}
	result := "delivered"
	switch {
	case a.Err != "" && !a.Retry.IsZero():
		result = "retry"
	case a.Err != "":
		result = "failed"
	}
	if _, err := s.st.OutboxAttempt(context.WithoutCancel(ctx), it.ID, a); err != nil {
		s.log.Error("webhook attempt not recorded", "delivery", it.ID, "err", err.Error())
	}
	s.deliveries.WithLabelValues(result).Inc()
}

// endpoint finds an endpoint in the cache, else (made by another
// replica since the last reload) in the ledger.
func (s *Service) endpoint(ctx context.Context, id string) (store.WebhookEndpoint, bool) {
	for _, ep := range s.endpoints() {
		if ep.ID == id {
			return ep, true
		}
	}
	ep, err := s.st.Webhook(ctx, id)
	return ep, err == nil
}
