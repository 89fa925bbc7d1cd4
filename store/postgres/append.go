package postgres

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/assent/assent/store"
)

// appendReq is one record waiting for the writer.
type appendReq struct {
	ctx    context.Context
	rec    *store.PendingRecord
	outbox func(store.Record) ([]store.OutboxItem, error)
	// unsubscribe: store nothing when the person's signup purposes on the
	// site already hold the states this record sets.
	unsubscribe bool
	// optIn is the double-opt-in step stored with the record: "pending"
	// (a signup), "confirmed" (Confirm).
	optIn string
	done  chan appendResult
}

type appendResult struct {
	rec    store.Record
	outbox []store.OutboxItem
	err    error
}

// Append stores a record durably and returns it as stored, as the bbolt
// ledger does (store.Store.Append): an error means "not stored", nil means
// "committed". A database that does not answer gives store.ErrUnavailable.
func (db *DB) Append(ctx context.Context, rec store.Record) (store.Record, error) {
	res := db.enqueueReq(ctx, db.Prepare(rec, nil), nil)
	return res.rec, res.err
}

func (db *DB) enqueueReq(ctx context.Context, rec *store.PendingRecord, outbox func(store.Record) ([]store.OutboxItem, error)) appendResult {
	return db.send(&appendReq{ctx: ctx, rec: rec, outbox: outbox, done: make(chan appendResult, 1)})
}

func (db *DB) send(req *appendReq) appendResult {
	if err := req.ctx.Err(); err != nil {
		return appendResult{err: err}
	}
	db.mu.RLock()
	if db.closed {
		db.mu.RUnlock()
		return appendResult{err: store.ErrClosed}
	}
	db.queue <- req
	db.mu.RUnlock()
	return <-req.done
}

// commitTimeout bounds one group commit, so a database that stops answering
// fails the batch (503) instead of holding every caller.
const commitTimeout = 15 * time.Second

// writer takes whatever has queued, appends it in one transaction and
// answers every caller after COMMIT (see the package comment).
func (db *DB) writer() {
	defer db.writerW.Done()
	batch := make([]*appendReq, 0, db.opts.maxBatch)
	for req := range db.queue {
		batch = append(batch[:0], req)
	fill:
		for len(batch) < db.opts.maxBatch {
			select {
			case r, ok := <-db.queue:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		db.commit(batch)
		for i, n := 0, -1; i < 3 && n != len(db.queue); i++ {
			n = len(db.queue)
			runtime.Gosched()
		}
	}
}

func (db *DB) commit(batch []*appendReq) {
	db.batches.Add(1)
	db.batched.Add(uint64(len(batch)))
	results := make([]appendResult, len(batch))
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	err := db.writeBatch(ctx, batch, results)
	for i, req := range batch {
		if err != nil && results[i].err == nil {
			results[i] = appendResult{err: fmt.Errorf("append: %w", wrap(err))}
		}
		req.done <- results[i]
	}
}

type head struct {
	count   int64
	lastID  []byte
	hash    []byte
	lastNs  int64
	changed bool
}

func (db *DB) writeBatch(ctx context.Context, batch []*appendReq, results []appendResult) error {
	live := make([]int, 0, len(batch))
	var sites []string
	var digests [][]byte // addresses and visitor ids the suppression list may hold
	for i, req := range batch {
		if err := req.ctx.Err(); err != nil {
			results[i].err = err
			continue
		}
		live = append(live, i)
		sites = append(sites, req.rec.Site())
		for _, d := range [][]byte{req.rec.Subject(), req.rec.VisitorDigest()} {
			if d != nil {
				digests = append(digests, d)
			}
		}
	}
	if len(live) == 0 {
		return nil
	}
	slices.Sort(sites)
	sites = slices.Compact(sites)
	rnd := make([]byte, 8*len(batch))
	if _, err := rand.Read(rnd); err != nil {
		return err
	}
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())

	// The heads, locked in site order so that replicas never deadlock, the
	// database clock, and which signups are suppressed: one round trip.
	b := &pgx.Batch{}
	heads := map[string]*head{}
	var dbNow int64
	b.Queue(`SELECT site, count, last_id, hash, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint
		FROM chains WHERE site = ANY($1) ORDER BY site FOR UPDATE`, sites).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			h := &head{}
			var site string
			var us int64
			if err := rows.Scan(&site, &h.count, &h.lastID, &h.hash, &us); err != nil {
				return err
			}
			h.lastNs = store.IDTime(h.lastID)
			heads[site], dbNow = h, us*1000
		}
		return rows.Err()
	})
	// The suppression list is read after the heads are locked: an erasure
	// holds every head while it suppresses, so what it suppressed is seen.
	suppressed := map[string]bool{}
	if len(digests) > 0 {
		b.Queue(`SELECT subject FROM suppression WHERE subject = ANY($1)`, digests).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var s []byte
				if err := rows.Scan(&s); err != nil {
					return err
				}
				suppressed[string(s)] = true
			}
			return rows.Err()
		})
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return err
	}

	var (
		insSite     []string
		insID       [][]byte
		insBody     [][]byte
		insSubject  [][]byte
		insVisitor  [][]byte
		insSubject2 [][]byte
		stored      = make([]store.Record, len(batch))
		w           = &pgx.Batch{}
		// records of this batch by subject, for unsubscribes that follow
		// them in the same batch
		batchBySubject = map[string][]store.Record{}
	)
	for _, i := range live {
		rec := batch[i].rec
		h := heads[rec.Site()]
		if h == nil {
			results[i].err = store.ErrNotFound
			continue
		}
		if err := rec.Suppress(suppressed[string(rec.Subject())], suppressed[string(rec.VisitorDigest())]); err != nil {
			results[i].err = err
			w.Queue(`INSERT INTO audit (at_ns, token, action, detail) VALUES ($1, $2, 'suppressed_signup', $3)`,
				db.now().UnixNano(), store.SystemActor, "site="+rec.Site())
			continue
		}
		if batch[i].optIn == "confirmed" && rec.Subject() != nil {
			// The site's head is locked, so one confirmation of a signup
			// wins even when replicas take the click twice.
			so, ok, err := optInOnSite(ctx, tx, rec.Subject(), rec.Site())
			if err != nil {
				return err
			}
			if ok && so.State == "confirmed" && so.SignupID == rec.Confirms() {
				results[i].err = &store.AlreadyConfirmedError{ID: so.ConfirmID, At: so.ConfirmedAt}
				continue
			}
		}
		if batch[i].unsubscribe && rec.Subject() != nil {
			// The site's head is locked: no replica appends to it meanwhile.
			recs, err := subjectRecords(ctx, tx, rec.Subject(), "")
			if err != nil {
				return err
			}
			recs = append(recs, batchBySubject[string(rec.Subject())]...)
			if last, ok := store.LatestIfSet(recs, rec.Site(), rec.Choices()); ok {
				stored[i] = last
				continue
			}
		}
		ns := max(dbNow, h.lastNs+1)
		r, id, body := rec.Seal(ns, binary.BigEndian.Uint64(rnd[8*i:]), h.hash)
		h.count++
		h.lastID, h.hash, h.lastNs, h.changed = id, bytes.Clone(body[len(body)-32:]), ns, true
		insSite, insID, insBody = append(insSite, r.Site), append(insID, id), append(insBody, body)
		insSubject, insVisitor = append(insSubject, rec.Subject()), append(insVisitor, rec.VisitorDigest())
		insSubject2 = append(insSubject2, rec.NewEmailDigest())
		stored[i] = r
		if rec.Subject() != nil {
			batchBySubject[string(rec.Subject())] = append(batchBySubject[string(rec.Subject())], r)
			if batch[i].optIn != "" {
				if err := putOptIn(ctx, tx, rec.Subject(), batch[i].optIn, r); err != nil {
					return err
				}
			}
		}
		if batch[i].outbox == nil {
			continue
		}
		items, err := batch[i].outbox(r)
		if err != nil {
			return fmt.Errorf("outbox items of a %s record: %w", r.Event, err)
		}
		for _, it := range items {
			it.Record = r.ID
			if it.Site == "" {
				it.Site = r.Site
			}
			ok, err := addItem(ctx, tx, &it, rec.Subject(), r.RecordedAt)
			if err != nil {
				return fmt.Errorf("outbox item of a %s record: %w", r.Event, err)
			}
			if ok {
				results[i].outbox = append(results[i].outbox, it)
			}
		}
	}
	if len(insID) > 0 {
		w.Queue(`INSERT INTO records (site, id, body, subject, visitor, subject2)
			SELECT * FROM unnest($1::text[], $2::bytea[], $3::bytea[], $4::bytea[], $5::bytea[], $6::bytea[])`, insSite, insID, insBody, insSubject, insVisitor, insSubject2)
		var hSite []string
		var hCount []int64
		var hLast, hHash [][]byte
		for _, site := range sites {
			if h := heads[site]; h != nil && h.changed {
				hSite, hCount, hLast, hHash = append(hSite, site), append(hCount, h.count), append(hLast, h.lastID), append(hHash, h.hash)
			}
		}
		w.Queue(`UPDATE chains c SET count = v.count, last_id = v.last_id, hash = v.hash
			FROM unnest($1::text[], $2::bigint[], $3::bytea[], $4::bytea[]) AS v(site, count, last_id, hash)
			WHERE c.site = v.site`, hSite, hCount, hLast, hHash)
	}
	if w.Len() > 0 {
		if err := tx.SendBatch(ctx, w).Close(); err != nil {
			return err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	queued := false
	for _, i := range live {
		if results[i].err == nil {
			results[i].rec = stored[i]
			queued = queued || len(results[i].outbox) > 0
		}
	}
	if queued {
		db.notifyOutbox()
	}
	return nil
}

// Unsubscribe checks an unsubscribe token and appends the withdraw record
// it asks for, as store.Store.Unsubscribe does.
func (db *DB) Unsubscribe(ctx context.Context, token string, meta store.Record) (store.Record, error) {
	rec, _, err := db.UnsubscribeWith(ctx, token, meta, store.AppendOptions{})
	return rec, err
}

// UnsubscribeWith is Unsubscribe plus the outbox items opts makes, in the
// record's transaction.
func (db *DB) UnsubscribeWith(ctx context.Context, token string, meta store.Record, opts store.AppendOptions) (store.Record, []store.OutboxItem, error) {
	siteID, subject, err := db.ParseUnsubscribeTokenDigest(token)
	if err != nil {
		return store.Record{}, nil, err
	}
	site, err := db.Site(ctx, siteID)
	if err != nil {
		return store.Record{}, nil, fmt.Errorf("site %q: %w", siteID, err)
	}
	recs, err := db.subjectRecords(ctx, subject)
	if err != nil {
		return store.Record{}, nil, err
	}
	rec := store.UnsubscribeRecord(site, recs, meta)
	res := db.send(&appendReq{ctx: ctx, rec: db.Prepare(rec, subject), unsubscribe: true, outbox: opts.Outbox, done: make(chan appendResult, 1)})
	return res.rec, res.outbox, res.err
}

// optInOnSite reads a person's double-opt-in state on a site, locking it.
func optInOnSite(ctx context.Context, tx pgx.Tx, subject []byte, site string) (store.SiteOptIn, bool, error) {
	var v []byte
	err := tx.QueryRow(ctx, `SELECT state FROM optin WHERE subject = $1 FOR UPDATE`, subject).Scan(&v)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return store.SiteOptIn{}, false, err
	}
	return store.OptInOnSite(v, site)
}

// putOptIn stores the double-opt-in step rec made, in its transaction.
func putOptIn(ctx context.Context, tx pgx.Tx, subject []byte, step string, rec store.Record) error {
	var old []byte
	err := tx.QueryRow(ctx, `SELECT state FROM optin WHERE subject = $1 FOR UPDATE`, subject).Scan(&old)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	v, err := store.OptInStep(old, step, rec)
	if err != nil || v == nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO optin (subject, state) VALUES ($1, $2)
		ON CONFLICT (subject) DO UPDATE SET state = excluded.state`, subject, v)
	return err
}

// Confirm checks a confirmation token and appends the signup's confirm
// record, as store.Store.Confirm does.
func (db *DB) Confirm(ctx context.Context, token string, meta store.Record) (store.Record, error) {
	rec, _, err := db.ConfirmWith(ctx, token, meta, store.AppendOptions{})
	return rec, err
}

// ConfirmWith is Confirm plus the outbox items opts makes, in the record's
// transaction.
func (db *DB) ConfirmWith(ctx context.Context, token string, meta store.Record, opts store.AppendOptions) (store.Record, []store.OutboxItem, error) {
	site, id, err := db.ParseConfirmToken(token)
	if err != nil {
		return store.Record{}, nil, err
	}
	var body []byte
	err = db.pool.QueryRow(ctx, `SELECT body FROM records WHERE site = $1 AND id = $2`, site, id).Scan(&body)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Record{}, nil, store.ErrBadToken
	}
	if err != nil {
		return store.Record{}, nil, wrap(err)
	}
	sr, err := decode(site, id, body)
	if err != nil {
		return store.Record{}, nil, err
	}
	signup := sr.Record()
	if signup.Tombstone || signup.Source != "signup" || signup.Erased || sr.EmailDigest() == nil {
		return store.Record{}, nil, store.ErrBadToken
	}
	rec := store.ConfirmRecord(signup, meta)
	if db.now().Sub(signup.RecordedAt) > store.ConfirmTTL {
		err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
			return putOptIn(ctx, tx, sr.EmailDigest(), "expired", rec)
		})
		if err != nil {
			return store.Record{}, nil, wrap(err)
		}
		return store.Record{}, nil, store.ErrTokenExpired
	}
	res := db.send(&appendReq{ctx: ctx, rec: db.Prepare(rec, nil), optIn: "confirmed", outbox: opts.Outbox, done: make(chan appendResult, 1)})
	return res.rec, res.outbox, res.err
}
