package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Webhook endpoints are the URLs that are told of consent changes. The
// store keeps them (with their signing secrets) and nothing else: which
// events a record causes, the payloads, signing and delivery belong to the
// webhook package, and the deliveries themselves are outbox items of kind
// "webhook" whose key is the endpoint's id.

// Webhooks is what a backend of the Ledger offers for webhook endpoints,
// the events queued in an erasure's or an unsubscribe's own transaction,
// and "retry now"; the bbolt Store's methods document each. The Ledger
// embeds it once the PostgreSQL backend implements it too.
type Webhooks interface {
	CreateWebhook(ctx context.Context, ep WebhookEndpoint) (WebhookEndpoint, error)
	Webhooks(ctx context.Context) ([]WebhookEndpoint, error)
	Webhook(ctx context.Context, id string) (WebhookEndpoint, error)
	DeleteWebhook(ctx context.Context, id string) error
	EraseWith(ctx context.Context, actor string, ref SubjectRef, opts EraseOptions) (ErasureReport, []OutboxItem, error)
	UnsubscribeWith(ctx context.Context, token string, meta Record, opts AppendOptions) (Record, []OutboxItem, error)
	ConfirmWith(ctx context.Context, token string, meta Record, opts AppendOptions) (Record, []OutboxItem, error)
	OutboxRetry(ctx context.Context, id string) (OutboxItem, error)
	OutboxHead(ctx context.Context, kind, key string) (OutboxItem, bool, error)
}

var _ Webhooks = (*Store)(nil)

// WebhookEndpoint is one URL that receives signed events.
type WebhookEndpoint struct {
	ID        string    `json:"id"` // "wh_…", chosen by the caller
	URL       string    `json:"url"`
	Events    []string  `json:"events"`
	Sites     []string  `json:"sites"` // empty = every site
	CreatedAt time.Time `json:"created_at"`
	// Secret is "whsec_<base64>": the signing key. Only the creating
	// answer shows it; lists leave it out.
	Secret string `json:"secret,omitempty"`
}

// bucketWebhooks holds the endpoints: <id> → WebhookEndpoint as JSON.
var bucketWebhooks = []byte("webhooks")

// migrateWebhooks (schema 2 → 3) adds the webhooks bucket.
func migrateWebhooks(tx *bolt.Tx) error {
	_, err := tx.CreateBucketIfNotExists(bucketWebhooks)
	return err
}

func (ep WebhookEndpoint) validate() error {
	switch {
	case ep.ID == "" || len(ep.ID) > 64:
		return invalid("id", "required, at most 64 bytes")
	case ep.URL == "" || len(ep.URL) > 2048:
		return invalid("url", "required, at most 2048 bytes")
	case len(ep.Events) == 0:
		return invalid("events", "at least one event type")
	case ep.Secret == "":
		return invalid("secret", "required")
	}
	return nil
}

// CreateWebhook stores a new endpoint (ErrExists for an id in use) and
// returns it as stored, secret included.
func (s *Store) CreateWebhook(ctx context.Context, ep WebhookEndpoint) (WebhookEndpoint, error) {
	if err := ep.validate(); err != nil {
		return WebhookEndpoint{}, err
	}
	if ep.CreatedAt.IsZero() {
		ep.CreatedAt = s.now()
	}
	ep.CreatedAt = ep.CreatedAt.UTC()
	if ep.Sites == nil {
		ep.Sites = []string{}
	}
	v, err := json.Marshal(ep)
	if err != nil {
		return WebhookEndpoint{}, err
	}
	err = s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketWebhooks)
		if b.Get([]byte(ep.ID)) != nil {
			return ErrExists
		}
		return b.Put([]byte(ep.ID), v)
	})
	if err != nil {
		return WebhookEndpoint{}, err
	}
	return ep, nil
}

// Webhooks returns every endpoint, oldest first, with its secret (the
// sender signs with it; the admin API leaves it out).
func (s *Store) Webhooks(ctx context.Context) ([]WebhookEndpoint, error) {
	var out []WebhookEndpoint
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketWebhooks).ForEach(func(k, v []byte) error {
			var ep WebhookEndpoint
			if err := json.Unmarshal(v, &ep); err != nil {
				return fmt.Errorf("%w: webhook %q: %v", ErrCorrupt, k, err)
			}
			out = append(out, ep)
			return nil
		})
	})
	sort.SliceStable(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, err
}

// Webhook returns one endpoint; ErrNotFound for an unknown id.
func (s *Store) Webhook(ctx context.Context, id string) (WebhookEndpoint, error) {
	var ep WebhookEndpoint
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketWebhooks).Get([]byte(id))
		if v == nil {
			return ErrNotFound
		}
		return json.Unmarshal(v, &ep)
	})
	return ep, err
}

// DeleteWebhook removes an endpoint; ErrNotFound for an unknown id. Its
// deliveries stay listed; the queued ones are given up ("endpoint
// deleted") in the same transaction.
func (s *Store) DeleteWebhook(ctx context.Context, id string) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketWebhooks)
		if b.Get([]byte(id)) == nil {
			return ErrNotFound
		}
		if err := b.Delete([]byte(id)); err != nil {
			return err
		}
		o, err := openOutbox(tx)
		if err != nil {
			return err
		}
		group := outboxGroup("webhook", id)
		var keys [][]byte
		c := o.queue.Cursor()
		for k, _ := c.Seek(group); k != nil && bytes.HasPrefix(k, group) && len(k) == len(group)+8; k, _ = c.Next() {
			keys = append(keys, bytes.Clone(k[len(group):]))
		}
		now := s.now().UTC()
		for _, key := range keys {
			it, err := o.get(key)
			if err != nil {
				return err
			}
			if err := o.due.Delete(dueKey(it.NextAttemptAt, key)); err != nil {
				return err
			}
			if err := o.queue.Delete(cat(group, key)); err != nil {
				return err
			}
			it.State, it.LastError, it.DoneAt, it.NextAttemptAt = OutboxFailed, "endpoint deleted", now, time.Time{}
			o.count(it.Kind, OutboxQueued, -1)
			o.count(it.Kind, OutboxFailed, 1)
			if err := o.put(key, &it); err != nil {
				return err
			}
		}
		return o.flush()
	})
}

// OutboxHead returns the oldest queued item of an ordered group (kind and
// key, e.g. a webhook endpoint): the one its sender delivers next, due or
// not. ok is false when the group has none queued. It reads one key,
// whatever the backlog, so a sender per group can poll it cheaply.
func (s *Store) OutboxHead(ctx context.Context, kind, key string) (OutboxItem, bool, error) {
	var it OutboxItem
	var ok bool
	err := s.db.View(func(tx *bolt.Tx) error {
		o, err := openOutbox(tx)
		if err != nil {
			return err
		}
		group := outboxGroup(kind, key)
		k, _ := o.queue.Cursor().Seek(group)
		if k == nil || !bytes.HasPrefix(k, group) || len(k) != len(group)+8 {
			return nil
		}
		if it, err = o.get(k[len(group):]); err != nil {
			return err
		}
		ok = true
		return nil
	})
	return it, ok, err
}

// ErasedSubject is what an erasure tells the systems that hold copies
// (GDPR Art. 19): the address, the visitor ids the person used with it and
// the sites that had records of them.
type ErasedSubject struct {
	Email      string    `json:"email"`
	VisitorIDs []string  `json:"visitor_ids"`
	ErasedAt   time.Time `json:"erased_at"`
	Sites      []string  `json:"sites"`
}

// EraseOptions are what EraseWith commits together with an erasure.
type EraseOptions struct {
	// Outbox, when set, is called inside the erasure's transaction with
	// what was erased (before it is blanked) and returns the items to queue
	// with it. It must be quick and must not call the Store.
	Outbox func(ErasedSubject) ([]OutboxItem, error)
}

// OutboxRetry queues a failed item again, due at once, keeping its
// attempts ("retry now"). ErrNotFound for an unknown id; an item that is
// not failed, or whose payload was erased, gives a *ValidationError.
func (s *Store) OutboxRetry(ctx context.Context, id string) (OutboxItem, error) {
	it, err := s.changeOutboxItem(id, func(o *outboxTx, key []byte, it *OutboxItem) (bool, error) {
		switch {
		case it.State != OutboxFailed:
			return false, invalid("state", "only a failed item can be retried; this one is %s", it.State)
		case it.Payload == nil:
			return false, invalid("payload", "erased: the item cannot be sent again")
		}
		it.State, it.DoneAt = OutboxQueued, time.Time{}
		it.NextAttemptAt = s.now().UTC()
		if err := o.due.Put(dueKey(it.NextAttemptAt, key), nil); err != nil {
			return false, err
		}
		if it.Ordered {
			if err := o.queue.Put(cat(outboxGroup(it.Kind, it.Key), key), nil); err != nil {
				return false, err
			}
		}
		o.count(it.Kind, OutboxFailed, -1)
		o.count(it.Kind, OutboxQueued, 1)
		return true, nil
	})
	if err == nil {
		s.notifyOutbox()
	}
	return it, err
}

// addOutboxItems queues items that belong to no record, inside tx.
func addOutboxItems(tx *bolt.Tx, items []OutboxItem, now time.Time) ([]OutboxItem, error) {
	if len(items) == 0 {
		return nil, nil
	}
	o, err := openOutbox(tx)
	if err != nil {
		return nil, err
	}
	var out []OutboxItem
	for _, it := range items {
		it.Record, it.subject = "", nil
		ok, err := o.add(&it, now)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, it)
		}
	}
	return out, o.flush()
}
