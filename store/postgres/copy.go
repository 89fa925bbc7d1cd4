package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/assent/assent/store"
)

// CopyReport counts what CopyFrom copied.
type CopyReport struct {
	Sites, Records, Notices, Suppressed, Tokens, Users, AuditEntries, OutboxItems int
}

// ErrNotEmpty: ledger copy only fills an empty database.
var ErrNotEmpty = errors.New("the database already holds a ledger (keys, sites or records): copy only into an empty one")

// CopyFrom copies the bbolt ledger src into the empty database at url in
// one transaction: keys, sites, notices, every record with its id, bytes
// and place in its chain, chain heads, double-opt-in states, suppression
// list, tokens, console users, audit log and outbox. Every receipt made by
// the old ledger verifies against the new one's JWKS, and Verify passes.
func CopyFrom(ctx context.Context, url string, src *store.Store) (CopyReport, error) {
	var rep CopyReport
	pool, err := newPool(ctx, url, 2)
	if err != nil {
		return rep, err
	}
	defer pool.Close()
	if err := migrate(ctx, pool); err != nil {
		return rep, err
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		// No replica may create keys meanwhile: they take this lock to
		// migrate, and find the keys once we commit.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(lockMigrate)); err != nil {
			return err
		}
		var used bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM meta) OR EXISTS (SELECT 1 FROM sites) OR EXISTS (SELECT 1 FROM records)`).Scan(&used); err != nil {
			return err
		}
		if used {
			return ErrNotEmpty
		}
		c := &copier{ctx: ctx, tx: tx, rep: &rep}
		if err := src.CopyTo(c); err != nil {
			return err
		}
		if err := c.flush(); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `SELECT setval(pg_get_serial_sequence('outbox', 'seq'), coalesce((SELECT max(seq) FROM outbox), 0) + 1, false)`)
		return err
	})
	if err != nil {
		return CopyReport{}, wrap(err)
	}
	return rep, nil
}

// copier is the store.Sink that writes into the transaction, records in
// COPY chunks.
type copier struct {
	ctx  context.Context
	tx   pgx.Tx
	rep  *CopyReport
	rows [][]any
	// last tombstone id per site: where the next purge starts
	purged map[string][]byte
}

const copyChunk = 5000

func (c *copier) Keys(k store.Keys) error {
	_, err := c.tx.Exec(c.ctx, `INSERT INTO meta (key, value) SELECT * FROM unnest($1::text[], $2::bytea[])`,
		keyNames, [][]byte{k.Digest, k.Signing, k.Unsubscribe})
	return err
}

func (c *copier) Site(s store.Site) error {
	config, err := json.Marshal(s)
	if err != nil {
		return err
	}
	c.rep.Sites++
	if _, err := c.tx.Exec(c.ctx, `INSERT INTO sites (id, config) VALUES ($1, $2)`, s.ID, config); err != nil {
		return err
	}
	_, err = c.tx.Exec(c.ctx, `INSERT INTO chains (site) VALUES ($1)`, s.ID)
	return err
}

func (c *copier) Notice(texts []byte) error {
	sum, _ := store.NoticeKey(texts)
	c.rep.Notices++
	_, err := c.tx.Exec(c.ctx, `INSERT INTO notices (hash, texts) VALUES ($1, $2) ON CONFLICT DO NOTHING`, sum, texts)
	return err
}

func (c *copier) Record(r *store.StoredRecord, blob []byte) error {
	rec := r.Record()
	id, err := store.ParseID(rec.ID)
	if err != nil {
		return err
	}
	if rec.Tombstone {
		if c.purged == nil {
			c.purged = map[string][]byte{}
		}
		c.purged[rec.Site] = id
	}
	c.rows = append(c.rows, []any{rec.Site, id, append([]byte(nil), blob...), r.EmailDigest(), r.VisitorDigest(), r.NewEmailDigest()})
	c.rep.Records++
	if len(c.rows) >= copyChunk {
		return c.flush()
	}
	return nil
}

func (c *copier) flush() error {
	if len(c.rows) == 0 {
		return nil
	}
	_, err := c.tx.CopyFrom(c.ctx, pgx.Identifier{"records"}, []string{"site", "id", "body", "subject", "visitor", "subject2"}, pgx.CopyFromRows(c.rows))
	c.rows = c.rows[:0]
	return err
}

func (c *copier) Chain(site string, count uint64, last, hash []byte) error {
	if err := c.flush(); err != nil {
		return err
	}
	_, err := c.tx.Exec(c.ctx, `INSERT INTO chains (site, count, last_id, hash, purged) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (site) DO UPDATE SET count = excluded.count, last_id = excluded.last_id, hash = excluded.hash, purged = excluded.purged`,
		site, int64(count), nilIfEmpty(last), nilIfEmpty(hash), c.purged[site])
	return err
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

func (c *copier) OptIn(subject, state []byte) error {
	_, err := c.tx.Exec(c.ctx, `INSERT INTO optin (subject, state) VALUES ($1, $2)`, subject, state)
	return err
}

func (c *copier) Suppression(subject []byte, at time.Time, reason string) error {
	c.rep.Suppressed++
	_, err := c.tx.Exec(c.ctx, `INSERT INTO suppression (subject, at_ns, reason) VALUES ($1, $2, $3)`, subject, at.UnixNano(), reason)
	return err
}

func (c *copier) Token(name, hash string, role store.Role, createdAt time.Time) error {
	c.rep.Tokens++
	_, err := c.tx.Exec(c.ctx, `INSERT INTO tokens (name, hash, role, created_at_ns) VALUES ($1, $2, $3, $4)`, name, hash, string(role), createdAt.UnixNano())
	return err
}

func (c *copier) User(email string, role store.Role, hash string, createdAt, changedAt time.Time) error {
	c.rep.Users++
	_, err := c.tx.Exec(c.ctx, `INSERT INTO users (email, role, hash, created_at_ns, password_changed_at_ns) VALUES ($1, $2, $3, $4, $5)`,
		email, string(role), hash, createdAt.UnixNano(), changedAt.UnixNano())
	return err
}

func (c *copier) Audit(e store.AuditEntry) error {
	c.rep.AuditEntries++
	_, err := c.tx.Exec(c.ctx, `INSERT INTO audit (at_ns, token, action, detail) VALUES ($1, $2, $3, $4)`, e.At.UnixNano(), e.Token, e.Action, e.Detail)
	return err
}

func (c *copier) OutboxItem(it store.OutboxItem, subject []byte) error {
	seq, err := strconv.ParseUint(it.ID, 16, 63)
	if err != nil {
		return fmt.Errorf("%w: outbox item id %q", store.ErrCorrupt, it.ID)
	}
	c.rep.OutboxItems++
	var payload []byte
	if it.Payload != nil {
		payload = it.Payload
	}
	_, err = c.tx.Exec(c.ctx, `INSERT INTO outbox (seq, kind, site, key, ordered, record, payload, state, attempts, last_error, last_code,
		created_at_ns, next_attempt_ns, done_at_ns, subject) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`,
		int64(seq), it.Kind, it.Site, it.Key, it.Ordered, it.Record, payload, it.State, it.Attempts, it.LastError, it.LastCode,
		it.CreatedAt.UnixNano(), nsOrNil(it.NextAttemptAt), nsOrNil(it.DoneAt), subject)
	return err
}
