package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/assent/assent/store"
)

// CreateWebhook stores a new endpoint (store.ErrExists for an id in use).
func (db *DB) CreateWebhook(ctx context.Context, ep store.WebhookEndpoint) (store.WebhookEndpoint, error) {
	if err := ep.Validate(); err != nil {
		return store.WebhookEndpoint{}, err
	}
	if ep.CreatedAt.IsZero() {
		ep.CreatedAt = db.now()
	}
	ep.CreatedAt = ep.CreatedAt.UTC()
	if ep.Sites == nil {
		ep.Sites = []string{}
	}
	v, err := json.Marshal(ep)
	if err != nil {
		return store.WebhookEndpoint{}, err
	}
	tag, err := db.pool.Exec(ctx, `INSERT INTO webhooks (id, endpoint, created_at_ns) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
		ep.ID, v, ep.CreatedAt.UnixNano())
	if err != nil {
		return store.WebhookEndpoint{}, wrap(err)
	}
	if tag.RowsAffected() == 0 {
		return store.WebhookEndpoint{}, store.ErrExists
	}
	return ep, nil
}

// Webhooks returns every endpoint, oldest first, with its secret.
func (db *DB) Webhooks(ctx context.Context) ([]store.WebhookEndpoint, error) {
	rows, err := db.pool.Query(ctx, `SELECT endpoint FROM webhooks ORDER BY created_at_ns, id`)
	if err != nil {
		return nil, wrap(err)
	}
	var out []store.WebhookEndpoint
	var v []byte
	_, err = pgx.ForEachRow(rows, []any{&v}, func() error {
		var ep store.WebhookEndpoint
		if err := json.Unmarshal(v, &ep); err != nil {
			return fmt.Errorf("%w: webhook: %v", store.ErrCorrupt, err)
		}
		out = append(out, ep)
		return nil
	})
	return out, wrap(err)
}

// Webhook returns one endpoint; store.ErrNotFound for an unknown id.
func (db *DB) Webhook(ctx context.Context, id string) (store.WebhookEndpoint, error) {
	var v []byte
	err := db.pool.QueryRow(ctx, `SELECT endpoint FROM webhooks WHERE id = $1`, id).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.WebhookEndpoint{}, store.ErrNotFound
	}
	if err != nil {
		return store.WebhookEndpoint{}, wrap(err)
	}
	var ep store.WebhookEndpoint
	return ep, json.Unmarshal(v, &ep)
}

// DeleteWebhook removes an endpoint; store.ErrNotFound for an unknown id.
func (db *DB) DeleteWebhook(ctx context.Context, id string) error {
	tag, err := db.pool.Exec(ctx, `DELETE FROM webhooks WHERE id = $1`, id)
	if err != nil {
		return wrap(err)
	}
	if tag.RowsAffected() == 0 {
		return store.ErrNotFound
	}
	return nil
}

// OutboxRetry queues a failed item again, due at once, keeping its attempts.
func (db *DB) OutboxRetry(ctx context.Context, id string) (store.OutboxItem, error) {
	seq, err := parseItemID(id)
	if err != nil {
		return store.OutboxItem{}, err
	}
	var it store.OutboxItem
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		var err error
		it, err = scanItem(tx.QueryRow(ctx, `SELECT `+outboxColumns+` FROM outbox WHERE seq = $1 FOR UPDATE`, seq))
		if errors.Is(err, pgx.ErrNoRows) {
			return store.ErrNotFound
		}
		if err != nil {
			return err
		}
		switch {
		case it.State != store.OutboxFailed:
			return &store.ValidationError{Field: "state", Code: "invalid_field", Message: "only a failed item can be retried; this one is " + it.State}
		case it.Payload == nil:
			return &store.ValidationError{Field: "payload", Code: "invalid_field", Message: "erased: the item cannot be sent again"}
		}
		now := db.now().UTC()
		it.State, it.DoneAt, it.NextAttemptAt = store.OutboxQueued, time.Time{}, now
		_, err = tx.Exec(ctx, `UPDATE outbox SET state = 'queued', done_at_ns = NULL, next_attempt_ns = $2 WHERE seq = $1`, seq, now.UnixNano())
		return err
	})
	if err != nil {
		return store.OutboxItem{}, wrap(err)
	}
	db.notifyOutbox()
	return it, nil
}

// erasedSubject is what an erasure tells webhook receivers.
func erasedSubject(rep store.ErasureReport, recs []store.Record, now time.Time) store.ErasedSubject {
	e := store.ErasedSubject{Email: rep.Email, VisitorIDs: rep.VisitorIDs, ErasedAt: now.UTC(), Sites: []string{}}
	for _, r := range recs {
		if !slices.Contains(e.Sites, r.Site) {
			e.Sites = append(e.Sites, r.Site)
		}
	}
	return e
}

// OutboxHead returns the oldest queued item of an ordered group (kind and
// key): the one its sender delivers next, due or not (outbox_group index).
func (db *DB) OutboxHead(ctx context.Context, kind, key string) (store.OutboxItem, bool, error) {
	it, err := scanItem(db.pool.QueryRow(ctx, `SELECT `+outboxColumns+` FROM outbox
		WHERE kind = $1 AND key = $2 AND ordered AND state = 'queued' ORDER BY seq LIMIT 1`, kind, key))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.OutboxItem{}, false, nil
	}
	if err != nil {
		return store.OutboxItem{}, false, wrap(err)
	}
	return it, true, nil
}
