package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/assent/assent/store"
)

// CreateToken makes a new admin token; see CreateTokenRole.
func (db *DB) CreateToken(ctx context.Context, name string) (string, error) {
	return db.CreateTokenRole(ctx, name, store.RoleAdmin)
}

// CreateTokenRole makes a new token with a role and keeps only its hash.
// An empty name becomes "admin-<n>"; a name in use gives store.ErrExists.
func (db *DB) CreateTokenRole(ctx context.Context, name string, role store.Role) (string, error) {
	_, tok, err := db.CreateTokenBy(ctx, "", name, role)
	return tok, err
}

// CreateTokenBy is CreateTokenRole writing the "token_create" audit entry
// of actor, under the name the token got, in the same transaction; it
// returns that name and the token.
func (db *DB) CreateTokenBy(ctx context.Context, actor, name string, role store.Role) (string, string, error) {
	if err := store.CheckRole(role); err != nil {
		return "", "", err
	}
	if err := store.CheckTokenName(name); err != nil {
		return "", "", err
	}
	token, hash, err := store.NewToken()
	if err != nil {
		return "", "", err
	}
	at := db.now().UnixNano()
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		insert := func(name string) (bool, error) {
			tag, err := tx.Exec(ctx, `INSERT INTO tokens (name, hash, created_at_ns, role) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING`, name, hash, at, string(role))
			return err == nil && tag.RowsAffected() == 1, err
		}
		if name != "" {
			ok, err := insert(name)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("token %q: %w", name, store.ErrExists)
			}
		} else {
			var n int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM tokens`).Scan(&n); err != nil {
				return err
			}
			for i := n + 1; ; i++ {
				ok, err := insert("admin-" + itoa(i))
				if err != nil {
					return err
				}
				if ok {
					name = "admin-" + itoa(i)
					break
				}
			}
		}
		return db.auditTx(ctx, tx, actor, "token_create", "token "+name+" role "+string(role))
	})
	if err != nil {
		return "", "", wrap(err)
	}
	return name, token, nil
}

// CheckToken tells whether token is a live admin token, and its name.
func (db *DB) CheckToken(ctx context.Context, token string) (string, bool) {
	t, ok := db.TokenFor(ctx, token)
	return t.Name, ok
}

// TokenFor finds the live token whose secret is token. The look-up is by
// the token's SHA-256, so its timing tells nothing of stored tokens.
func (db *DB) TokenFor(ctx context.Context, token string) (store.Token, bool) {
	if !store.LooksLikeToken(token) {
		return store.Token{}, false
	}
	var t store.Token
	var role string
	var at int64
	if err := db.pool.QueryRow(ctx, `SELECT name, role, created_at_ns FROM tokens WHERE hash = $1`, store.TokenHash(token)).Scan(&t.Name, &role, &at); err != nil {
		return store.Token{}, false
	}
	t.Role, t.CreatedAt = store.Role(role), time.Unix(0, at).UTC()
	return t, true
}

// Tokens lists the admin tokens by name.
func (db *DB) Tokens(ctx context.Context) ([]store.Token, error) {
	rows, err := db.pool.Query(ctx, `SELECT name, role, created_at_ns FROM tokens ORDER BY name`)
	if err != nil {
		return nil, wrap(err)
	}
	var tokens []store.Token
	var name, role string
	var at int64
	_, err = pgx.ForEachRow(rows, []any{&name, &role, &at}, func() error {
		tokens = append(tokens, store.Token{Name: name, Role: store.Role(role), CreatedAt: time.Unix(0, at).UTC()})
		return nil
	})
	return tokens, wrap(err)
}

// RevokeToken deletes a token by name; store.ErrNotFound, or
// store.ErrLastAdmin for the last admin token or user.
func (db *DB) RevokeToken(ctx context.Context, name string) error {
	return db.RevokeTokenBy(ctx, "", name)
}

// RevokeTokenBy is RevokeToken writing the "token_revoke" audit entry of
// actor in the same transaction.
func (db *DB) RevokeTokenBy(ctx context.Context, actor, name string) error {
	return wrap(pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		var role string
		err := tx.QueryRow(ctx, `SELECT role FROM tokens WHERE name = $1 FOR UPDATE`, name).Scan(&role)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("token %q: %w", name, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		if err := keepAnAdmin(ctx, tx, role); err != nil {
			return fmt.Errorf("token %q: %w", name, err)
		}
		if _, err = tx.Exec(ctx, `DELETE FROM tokens WHERE name = $1`, name); err != nil {
			return err
		}
		return db.auditTx(ctx, tx, actor, "token_revoke", "token "+name)
	}))
}

// TokenCount is the number of admin tokens.
func (db *DB) TokenCount(ctx context.Context) (int, error) {
	var n int
	err := db.pool.QueryRow(ctx, `SELECT count(*) FROM tokens`).Scan(&n)
	return n, wrap(err)
}

// Audit appends an entry. Detail must not hold personal data.
func (db *DB) Audit(ctx context.Context, token, action, detail string) error {
	_, err := db.pool.Exec(ctx, `INSERT INTO audit (at_ns, token, action, detail) VALUES ($1, $2, $3, $4)`,
		db.now().UnixNano(), token, action, detail)
	return wrap(err)
}

// auditTx appends the audit entry of an admin change inside that change's
// own transaction tx; none when actor is "" (the change was not asked for
// by anyone to name, as with the plain CreateSite).
func (db *DB) auditTx(ctx context.Context, tx pgx.Tx, actor, action, detail string) error {
	if actor == "" {
		return nil
	}
	_, err := tx.Exec(ctx, `INSERT INTO audit (at_ns, token, action, detail) VALUES ($1, $2, $3, $4)`,
		db.now().UnixNano(), actor, action, detail)
	return err
}

// AuditLog calls fn for each entry from from (inclusive) to to (exclusive;
// zero is open), oldest first, a keyset page at a time.
func (db *DB) AuditLog(ctx context.Context, from, to time.Time, fn func(store.AuditEntry) error) error {
	lo, hi := int64(0), int64(1<<63-1)
	if !from.IsZero() {
		lo = max(from.UnixNano(), 0)
	}
	if !to.IsZero() {
		hi = max(to.UnixNano(), 0)
	}
	afterAt, afterSeq := lo, int64(-1)
	for {
		rows, err := db.pool.Query(ctx, `SELECT seq, at_ns, token, action, detail FROM audit
			WHERE (at_ns, seq) > ($1, $2) AND at_ns < $3 ORDER BY at_ns, seq LIMIT $4`, afterAt, afterSeq, hi, pageSize)
		if err != nil {
			return wrap(err)
		}
		var page []store.AuditEntry
		var seq, at int64
		var e store.AuditEntry
		if _, err := pgx.ForEachRow(rows, []any{&seq, &at, &e.Token, &e.Action, &e.Detail}, func() error {
			e.At = time.Unix(0, at).UTC()
			page = append(page, e)
			afterAt, afterSeq = at, seq
			return nil
		}); err != nil {
			return wrap(err)
		}
		for _, e := range page {
			if err := fn(e); err != nil {
				return err
			}
		}
		if len(page) < pageSize {
			return nil
		}
	}
}

// Verify walks every site's chain, a page at a time, with the checks of
// store.Store.Verify, up to the heads read at its start.
func (db *DB) Verify(ctx context.Context) (store.VerifyReport, error) {
	rep := store.VerifyReport{OK: true, Sites: map[string]store.ChainHead{}}
	rows, err := db.pool.Query(ctx, `SELECT site, count, last_id, hash FROM chains ORDER BY site`)
	if err != nil {
		return rep, wrap(err)
	}
	type chain struct {
		site       string
		count      int64
		last, hash []byte
	}
	var chains []chain
	var c chain
	if _, err := pgx.ForEachRow(rows, []any{&c.site, &c.count, &c.last, &c.hash}, func() error {
		chains = append(chains, chain{c.site, c.count, bytes.Clone(c.last), bytes.Clone(c.hash)})
		return nil
	}); err != nil {
		return rep, wrap(err)
	}
	var orphan string
	err = db.pool.QueryRow(ctx, `SELECT r.site FROM (SELECT DISTINCT site FROM records) r
		LEFT JOIN chains c ON c.site = r.site WHERE c.site IS NULL LIMIT 1`).Scan(&orphan)
	switch {
	case err == nil:
		fail(&rep, orphan, "", "records without a chain head")
		return rep, nil
	case !errors.Is(err, pgx.ErrNoRows):
		return rep, wrap(err)
	}
	for _, c := range chains {
		var prev, lastID []byte
		var n int64
		live := false
		err := db.pages(ctx, c.site, nil, nil, c.count, func(id, body []byte) error {
			n++
			lastID = id
			r, err := store.DecodeRecord(c.site, id, body)
			if err != nil {
				fail(&rep, c.site, store.FormatID(id), "cannot decode: "+err.Error())
				return errStop
			}
			if reason := db.CheckRecord(r, prev, live); reason != "" {
				fail(&rep, c.site, store.FormatID(id), reason)
				return errStop
			}
			live = live || !r.Record().Tombstone
			prev = r.Hash()
			return nil
		})
		if errors.Is(err, errStop) {
			return rep, nil
		}
		if err != nil {
			return rep, err
		}
		switch {
		case n < c.count:
			fail(&rep, c.site, store.FormatID(c.last), fmt.Sprintf("chain has %d records, its head says %d: records are missing", n, c.count))
			return rep, nil
		case !bytes.Equal(prev, c.hash) || !bytes.Equal(lastID, c.last):
			fail(&rep, c.site, store.FormatID(lastID), "last record is not the stored chain head")
			return rep, nil
		}
		rep.Records += int(n)
		head := ""
		if len(c.hash) > 0 {
			head = fmt.Sprintf("%x", c.hash)
		}
		rep.Sites[c.site] = store.ChainHead{Records: int(n), Head: head}
	}
	return rep, nil
}

var errStop = errors.New("stop")

func fail(rep *store.VerifyReport, site, id, reason string) {
	if rep.OK {
		rep.OK, rep.BadSite, rep.BadID, rep.Reason = false, site, id, reason
	}
}

// purgeChunk is how many records one purge transaction turns into
// tombstones.
const purgeChunk = 2048

// Purge applies each site's retention_days as store.Store.Purge does. Only
// one replica purges at a time: one that finds the purge lock taken
// returns 0 at once, since the other does the same work.
func (db *DB) Purge(ctx context.Context, now time.Time) (int, error) {
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return 0, wrap(err)
	}
	defer conn.Release()
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, int64(lockPurge)).Scan(&got); err != nil {
		return 0, wrap(err)
	}
	if !got {
		return 0, nil
	}
	defer conn.Exec(context.Background(), `SELECT pg_advisory_unlock($1)`, int64(lockPurge))
	sites, err := db.Sites(ctx)
	if err != nil {
		return 0, err
	}
	total := 0
	for _, site := range sites {
		if site.RetentionDays <= 0 {
			continue
		}
		cutoff := now.Add(-time.Duration(site.RetentionDays) * 24 * time.Hour)
		n, err := db.purgeSite(ctx, site.ID, store.IDFloor(cutoff))
		total += n
		if err != nil {
			return total, err
		}
		if n > 0 {
			detail := fmt.Sprintf("site=%s records=%d before=%s", site.ID, n, cutoff.UTC().Format(time.RFC3339))
			if err := db.Audit(ctx, store.SystemActor, "purge", detail); err != nil {
				return total, err
			}
		}
	}
	return total, nil
}

// purgeSite tombstones the site's records with ids below end, starting
// after the last one purged before (chains.purged), a chunk per
// transaction, so a purge never re-reads old tombstones.
func (db *DB) purgeSite(ctx context.Context, site string, end []byte) (int, error) {
	total := 0
	for {
		n, seen := 0, 0
		err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
			n, seen = 0, 0
			var after []byte
			if err := tx.QueryRow(ctx, `SELECT coalesce(purged, ''::bytea) FROM chains WHERE site = $1 FOR UPDATE`, site).Scan(&after); err != nil {
				return err
			}
			rows, err := tx.Query(ctx, `SELECT id, body FROM records WHERE site = $1 AND id > $2 AND id < $3
				ORDER BY id LIMIT $4 FOR UPDATE`, site, after, end, purgeChunk)
			if err != nil {
				return err
			}
			b := &pgx.Batch{}
			var id, body, last []byte
			if _, err := pgx.ForEachRow(rows, []any{&id, &body}, func() error {
				r, err := decode(site, id, body)
				if err != nil {
					return err
				}
				last = bytes.Clone(id)
				seen++
				if r.Record().Tombstone {
					return nil
				}
				n++
				r.Tombstone()
				b.Queue(`UPDATE records SET body = $3, subject = NULL, visitor = NULL, subject2 = NULL WHERE site = $1 AND id = $2`, site, last, r.Encode())
				return nil
			}); err != nil {
				return err
			}
			if last == nil {
				return nil
			}
			b.Queue(`UPDATE chains SET purged = $2 WHERE site = $1`, site, last)
			return tx.SendBatch(ctx, b).Close()
		})
		if err != nil {
			return total, wrap(err)
		}
		total += n
		if seen < purgeChunk {
			return total, nil
		}
	}
}

// RunRetention purges now and then every interval (an hour when every is
// not positive) until ctx is done. It logs counts only.
func (db *DB) RunRetention(ctx context.Context, every time.Duration, log *slog.Logger) {
	if every <= 0 {
		every = time.Hour
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		n, err := db.Purge(ctx, db.now())
		switch {
		case err != nil && ctx.Err() == nil:
			log.Error("retention purge failed", "err", err)
		case n > 0:
			log.Info("retention purge", "records", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
