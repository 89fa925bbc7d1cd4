package postgres

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/assent/assent/store"
)

// The rights an admin records on a person's request (store/rights.go): the
// records and their audit entry commit in one transaction, under the chain
// locks of their sites, after the checks the bbolt writer makes: the person
// not erased meanwhile, and for a rectification the new address free.

// WithdrawOnRequest records a withdrawal a person asked an admin for
// (store.Store.WithdrawOnRequest).
func (db *DB) WithdrawOnRequest(ctx context.Context, actor string, w store.Withdrawal, opts store.AppendOptions) ([]store.Record, error) {
	if err := w.Check(); err != nil {
		return nil, err
	}
	recs, st, err := db.Lookup(ctx, store.SubjectRef{Email: w.Email})
	if err != nil {
		return nil, err
	}
	sites, err := db.Sites(ctx)
	if err != nil {
		return nil, err
	}
	out, err := store.WithdrawalRecords(w, sites, recs, st)
	if err != nil {
		return nil, err
	}
	return db.appendGroup(ctx, out, nil, opts, actor, "withdraw", store.WithdrawAuditDetail(out))
}

// Rectify records a correction of a person's address (store.Store.Rectify).
func (db *DB) Rectify(ctx context.Context, actor string, r store.Rectification, opts store.AppendOptions) ([]store.Record, error) {
	if err := r.Check(); err != nil {
		return nil, err
	}
	recs, st, err := db.Lookup(ctx, store.SubjectRef{Email: r.Email})
	if err != nil {
		return nil, err
	}
	sites, err := db.Sites(ctx)
	if err != nil {
		return nil, err
	}
	out, err := store.RectifyRecords(r, sites, recs, st)
	if err != nil {
		return nil, err
	}
	return db.appendGroup(ctx, out, db.SubjectDigest(r.NewEmail), opts, actor, "rectify", store.RectifyAuditDetail(out))
}

// appendGroup appends records as one transaction with an audit entry.
func (db *DB) appendGroup(ctx context.Context, recs []store.Record, free []byte, opts store.AppendOptions,
	actor, action, detail string) ([]store.Record, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	pending := make([]*store.PendingRecord, len(recs))
	var sites []string
	var digests [][]byte
	for i, r := range recs {
		pending[i] = db.Prepare(r, nil)
		sites = append(sites, pending[i].Site())
		if d := pending[i].VisitorDigest(); d != nil {
			digests = append(digests, d)
		}
	}
	subject := pending[0].Subject()
	if subject == nil {
		return nil, store.ErrSuppressed
	}
	digests = append(digests, subject)
	slices.Sort(sites)
	sites = slices.Compact(sites)
	rnd := make([]byte, 8*len(recs))
	if _, err := rand.Read(rnd); err != nil {
		return nil, err
	}
	out := make([]store.Record, len(recs))
	var queued bool
	ctx = context.WithoutCancel(ctx) // once started, the group commits whole
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		queued = false
		heads := map[string]*head{}
		var dbNow int64
		rows, err := tx.Query(ctx, `SELECT site, count, last_id, hash, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint
			FROM chains WHERE site = ANY($1) ORDER BY site FOR UPDATE`, sites)
		if err != nil {
			return err
		}
		for rows.Next() {
			h := &head{}
			var site string
			var us int64
			if err := rows.Scan(&site, &h.count, &h.lastID, &h.hash, &us); err != nil {
				rows.Close()
				return err
			}
			h.lastNs = store.IDTime(h.lastID)
			heads[site], dbNow = h, us*1000
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		suppressed := map[string]bool{}
		check := append(slices.Clone(digests), free)
		if free == nil {
			check = digests
		}
		rows, err = tx.Query(ctx, `SELECT subject FROM suppression WHERE subject = ANY($1)`, check)
		if err != nil {
			return err
		}
		for rows.Next() {
			var s []byte
			if err := rows.Scan(&s); err != nil {
				rows.Close()
				return err
			}
			suppressed[string(s)] = true
		}
		rows.Close()
		switch {
		case suppressed[string(subject)]:
			return store.ErrSuppressed
		case free != nil && suppressed[string(free)]:
			return fmt.Errorf("new_email: %w", store.ErrSuppressed)
		case free != nil:
			var taken bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM records WHERE subject = $1) OR EXISTS (SELECT 1 FROM records WHERE subject2 = $1)`, free).Scan(&taken); err != nil {
				return err
			}
			if taken {
				return store.ErrSubjectExists
			}
		}
		b := &pgx.Batch{}
		for i, p := range pending {
			h := heads[p.Site()]
			if h == nil {
				return fmt.Errorf("site %q: %w", p.Site(), store.ErrNotFound)
			}
			if err := p.Suppress(false, suppressed[string(p.VisitorDigest())]); err != nil {
				return err
			}
			ns := max(dbNow, h.lastNs+1)
			r, id, body := p.Seal(ns, binary.BigEndian.Uint64(rnd[8*i:]), h.hash)
			h.count++
			h.lastID, h.hash, h.lastNs = id, bytes.Clone(body[len(body)-32:]), ns
			b.Queue(`INSERT INTO records (site, id, body, subject, visitor, subject2) VALUES ($1, $2, $3, $4, $5, $6)`,
				r.Site, id, body, p.Subject(), p.VisitorDigest(), p.NewEmailDigest())
			b.Queue(`UPDATE chains SET count = $2, last_id = $3, hash = $4 WHERE site = $1`, r.Site, h.count, id, h.hash)
			out[i] = r
			if opts.Outbox != nil {
				items, err := opts.Outbox(r)
				if err != nil {
					return fmt.Errorf("outbox items of a %s record: %w", r.Event, err)
				}
				for _, it := range items {
					it.Record = r.ID
					if it.Site == "" {
						it.Site = r.Site
					}
					ok, err := addItem(ctx, tx, &it, p.Subject(), r.RecordedAt)
					if err != nil {
						return err
					}
					queued = queued || ok
				}
			}
		}
		b.Queue(`INSERT INTO audit (at_ns, token, action, detail) VALUES ($1, $2, $3, $4)`, db.now().UnixNano(), actor, action, detail)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return nil, wrap(err)
	}
	if queued {
		db.notifyOutbox()
	}
	return out, nil
}
