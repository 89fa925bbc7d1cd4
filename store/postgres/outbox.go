package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/assent/assent/store"
)

// The outbox as store/outbox.go describes it, in the outbox table. Senders
// in several replicas may take the same due item; delivery is at least once
// (receivers de-duplicate by the event id), as after a crash.

const outboxColumns = `seq, kind, site, key, ordered, record, payload, state, attempts, last_error, last_code,
	created_at_ns, next_attempt_ns, done_at_ns`

func scanItem(row pgx.Row) (store.OutboxItem, error) {
	var it store.OutboxItem
	var seq, created int64
	var next, done *int64
	var payload []byte
	err := row.Scan(&seq, &it.Kind, &it.Site, &it.Key, &it.Ordered, &it.Record, &payload, &it.State, &it.Attempts,
		&it.LastError, &it.LastCode, &created, &next, &done)
	if err != nil {
		return it, err
	}
	it.ID = fmt.Sprintf("%016x", seq)
	if payload != nil {
		it.Payload = payload
	}
	it.CreatedAt = time.Unix(0, created).UTC()
	if next != nil {
		it.NextAttemptAt = time.Unix(0, *next).UTC()
	}
	if done != nil {
		it.DoneAt = time.Unix(0, *done).UTC()
	}
	return it, nil
}

func collectItems(rows pgx.Rows, err error) ([]store.OutboxItem, error) {
	if err != nil {
		return nil, wrap(err)
	}
	defer rows.Close()
	var items []store.OutboxItem
	for rows.Next() {
		it, err := scanItem(rows)
		if err != nil {
			return nil, wrap(err)
		}
		items = append(items, it)
	}
	return items, wrap(rows.Err())
}

func parseItemID(id string) (int64, error) {
	if len(id) != 16 {
		return 0, store.ErrNotFound
	}
	v, err := strconv.ParseUint(id, 16, 63)
	if err != nil {
		return 0, store.ErrNotFound
	}
	return int64(v), nil
}

// addItem stores a new item in tx, queued and due at once (or at
// NextAttemptAt); false, storing nothing, when its Cap is reached.
func addItem(ctx context.Context, tx pgx.Tx, it *store.OutboxItem, subject []byte, now time.Time) (bool, error) {
	if err := it.Validate(); err != nil {
		return false, err
	}
	if it.Cap.N > 0 {
		since := now.Add(-it.Cap.Per).UnixNano()
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM (SELECT created_at_ns FROM outbox
			WHERE kind = $1 AND key = $2 ORDER BY seq DESC LIMIT $3) t WHERE created_at_ns >= $4`,
			it.Kind, it.Key, it.Cap.N, since).Scan(&n); err != nil {
			return false, err
		}
		if n >= it.Cap.N {
			return false, nil
		}
	}
	it.State, it.Attempts, it.LastError, it.LastCode, it.DoneAt = store.OutboxQueued, 0, "", 0, time.Time{}
	it.CreatedAt = now.UTC()
	if it.NextAttemptAt.IsZero() {
		it.NextAttemptAt = it.CreatedAt
	}
	var payload []byte
	if it.Payload != nil {
		payload = it.Payload
	}
	var seq int64
	if err := tx.QueryRow(ctx, `INSERT INTO outbox (kind, site, key, ordered, record, payload, state, created_at_ns, next_attempt_ns, subject)
		VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7, $8, $9) RETURNING seq`,
		it.Kind, it.Site, it.Key, it.Ordered, it.Record, payload, it.CreatedAt.UnixNano(), it.NextAttemptAt.UnixNano(), subject).Scan(&seq); err != nil {
		return false, err
	}
	it.ID = fmt.Sprintf("%016x", seq)
	return true, nil
}

// AppendWith is Append plus the outbox items made from the stored record,
// committed in the record's transaction (store.Store.AppendWith).
func (db *DB) AppendWith(ctx context.Context, rec store.Record, opts store.AppendOptions) (store.Record, []store.OutboxItem, error) {
	if opts.OptIn != "" && opts.OptIn != "pending" {
		return store.Record{}, nil, &store.ValidationError{Field: "double_opt_in", Code: "invalid_field",
			Message: `AppendWith takes the step "pending"; Confirm makes "confirmed"`}
	}
	res := db.send(&appendReq{ctx: ctx, rec: db.Prepare(rec, nil), outbox: opts.Outbox, optIn: opts.OptIn, done: make(chan appendResult, 1)})
	return res.rec, res.outbox, res.err
}

// Enqueue stores items that belong to no record in their own transaction.
func (db *DB) Enqueue(ctx context.Context, items ...store.OutboxItem) ([]store.OutboxItem, error) {
	var out []store.OutboxItem
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		out = out[:0]
		now := db.now()
		for _, it := range items {
			it.Record = ""
			ok, err := addItem(ctx, tx, &it, nil, now)
			if err != nil {
				return err
			}
			if ok {
				out = append(out, it)
			}
		}
		return nil
	})
	if err != nil {
		return nil, wrap(err)
	}
	if len(out) > 0 {
		db.notifyOutbox()
	}
	return out, nil
}

// OutboxAttempt records an attempt at a queued item (store.Store.OutboxAttempt).
func (db *DB) OutboxAttempt(ctx context.Context, id string, a store.Attempt) (store.OutboxItem, error) {
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
		if err != nil || it.State != store.OutboxQueued {
			return err
		}
		now := db.now().UTC()
		it.Attempts++
		it.LastError, it.LastCode = store.TruncateUTF8(a.Err, 1000), a.Code
		switch {
		case a.Err == "":
			it.State, it.DoneAt, it.NextAttemptAt = store.OutboxSent, now, time.Time{}
		case a.Retry.IsZero():
			it.State, it.DoneAt, it.NextAttemptAt = store.OutboxFailed, now, time.Time{}
		default:
			it.NextAttemptAt = a.Retry.UTC()
		}
		_, err = tx.Exec(ctx, `UPDATE outbox SET state = $2, attempts = $3, last_error = $4, last_code = $5,
			next_attempt_ns = $6, done_at_ns = $7 WHERE seq = $1`,
			seq, it.State, it.Attempts, it.LastError, it.LastCode, nsOrNil(it.NextAttemptAt), nsOrNil(it.DoneAt))
		return err
	})
	return it, wrap(err)
}

func nsOrNil(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	ns := t.UnixNano()
	return &ns
}

// OutboxDue returns up to limit due queued items of kind ("" = all),
// earliest first, only the oldest queued one of each ordered group, and
// when the next item not yet due is due (store.Store.OutboxDue).
func (db *DB) OutboxDue(ctx context.Context, kind string, now time.Time, limit int) ([]store.OutboxItem, time.Time, error) {
	end := max(now.UnixNano(), 0)
	items, err := collectItems(db.pool.Query(ctx, `SELECT `+outboxColumns+` FROM outbox o
		WHERE state = 'queued' AND next_attempt_ns <= $1 AND ($2 = '' OR kind = $2)
		  AND (NOT ordered OR NOT EXISTS (SELECT 1 FROM outbox e WHERE e.kind = o.kind AND e.key = o.key
		       AND e.ordered AND e.state = 'queued' AND e.seq < o.seq))
		ORDER BY next_attempt_ns, seq LIMIT $3`, end, kind, limit+1))
	if err != nil {
		return nil, time.Time{}, err
	}
	if len(items) > limit {
		return items[:limit], now, nil
	}
	var next *int64
	if err := db.pool.QueryRow(ctx, `SELECT min(next_attempt_ns) FROM outbox WHERE state = 'queued' AND next_attempt_ns > $1`, end).Scan(&next); err != nil {
		return nil, time.Time{}, wrap(err)
	}
	var at time.Time
	if next != nil {
		at = time.Unix(0, *next).UTC()
	}
	return items, at, nil
}

// OutboxList returns a site's items, newest first (store.Store.OutboxList).
func (db *DB) OutboxList(ctx context.Context, q store.OutboxQuery) ([]store.OutboxItem, error) {
	if q.Limit <= 0 {
		q.Limit = 100
	}
	before := int64(1<<63 - 1)
	if q.Before != "" {
		b, err := parseItemID(q.Before)
		if err != nil {
			return nil, &store.ValidationError{Field: "before", Message: "not an outbox item id", Code: "invalid_field"}
		}
		before = b
	}
	key := q.Key
	if q.Kind == "" {
		key = ""
	}
	return collectItems(db.pool.Query(ctx, `SELECT `+outboxColumns+` FROM outbox
		WHERE site = $1 AND ($2 = '' OR kind = $2) AND ($3 = '' OR key = $3) AND seq < $4
		ORDER BY seq DESC LIMIT $5`, q.Site, q.Kind, key, before, q.Limit))
}

// OutboxItemByID returns one item; store.ErrNotFound for an unknown id.
func (db *DB) OutboxItemByID(ctx context.Context, id string) (store.OutboxItem, error) {
	seq, err := parseItemID(id)
	if err != nil {
		return store.OutboxItem{}, err
	}
	it, err := scanItem(db.pool.QueryRow(ctx, `SELECT `+outboxColumns+` FROM outbox WHERE seq = $1`, seq))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.OutboxItem{}, store.ErrNotFound
	}
	return it, wrap(err)
}

// OutboxCounts returns how many items of kind are in each state.
func (db *DB) OutboxCounts(ctx context.Context, kind string) (map[string]int, error) {
	out := map[string]int{store.OutboxQueued: 0, store.OutboxSent: 0, store.OutboxFailed: 0}
	rows, err := db.pool.Query(ctx, `SELECT state, count(*) FROM outbox WHERE kind = $1 GROUP BY state`, kind)
	if err != nil {
		return nil, wrap(err)
	}
	var state string
	var n int
	_, err = pgx.ForEachRow(rows, []any{&state, &n}, func() error { out[state] = n; return nil })
	return out, wrap(err)
}

// OutboxWake receives after each commit of this process that queued items;
// senders also poll, for items other replicas queued.
func (db *DB) OutboxWake() <-chan struct{} { return db.outboxWake }

func (db *DB) notifyOutbox() {
	select {
	case db.outboxWake <- struct{}{}:
	default:
	}
}

// eraseOutbox blanks the payloads of a person's items and gives up the
// queued ones, in the erasure's transaction.
func eraseOutbox(b *pgx.Batch, subject []byte, now time.Time) {
	b.Queue(`UPDATE outbox SET payload = NULL,
		last_error = CASE WHEN state = 'queued' THEN 'erased' ELSE last_error END,
		done_at_ns = CASE WHEN state = 'queued' THEN $2 ELSE done_at_ns END,
		next_attempt_ns = CASE WHEN state = 'queued' THEN NULL ELSE next_attempt_ns END,
		state = CASE WHEN state = 'queued' THEN 'failed' ELSE state END
		WHERE subject = $1`, subject, now.UnixNano())
}
