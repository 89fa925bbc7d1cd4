package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/assent/assent/store"
)

// pageSize is how many rows one keyset page reads: exports hold one page
// in memory whatever the number of records.
const pageSize = 1000

// Sites lists every site, ordered by id.
func (db *DB) Sites(ctx context.Context) ([]store.Site, error) {
	rows, err := db.pool.Query(ctx, `SELECT id, config FROM sites ORDER BY id`)
	if err != nil {
		return nil, wrap(err)
	}
	var sites []store.Site
	var id string
	var config []byte
	_, err = pgx.ForEachRow(rows, []any{&id, &config}, func() error {
		var s store.Site
		if err := json.Unmarshal(config, &s); err != nil {
			return fmt.Errorf("%w: site %q: %v", store.ErrCorrupt, id, err)
		}
		sites = append(sites, s)
		return nil
	})
	return sites, wrap(err)
}

// Site returns one site's config, or store.ErrNotFound.
func (db *DB) Site(ctx context.Context, id string) (store.Site, error) {
	return getSite(ctx, db.pool, id, "")
}

func getSite(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, id, lock string) (store.Site, error) {
	var config []byte
	err := q.QueryRow(ctx, `SELECT config FROM sites WHERE id = $1 `+lock, id).Scan(&config)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Site{}, store.ErrNotFound
	}
	if err != nil {
		return store.Site{}, wrap(err)
	}
	var s store.Site
	if err := json.Unmarshal(config, &s); err != nil {
		return store.Site{}, fmt.Errorf("%w: site %q: %v", store.ErrCorrupt, id, err)
	}
	return s, nil
}

// CreateSite stores a new site (store.NewSite) and its empty chain, or
// gives store.ErrSiteExists.
func (db *DB) CreateSite(ctx context.Context, site store.Site) (store.Site, error) {
	return db.createSite(ctx, "", site)
}

// CreateSiteBy is CreateSite writing the "site_create" audit entry of actor
// in the same transaction.
func (db *DB) CreateSiteBy(ctx context.Context, actor string, site store.Site) (store.Site, error) {
	return db.createSite(ctx, actor, site)
}

func (db *DB) createSite(ctx context.Context, actor string, site store.Site) (store.Site, error) {
	site, err := store.NewSite(site, db.now())
	if err != nil {
		return store.Site{}, err
	}
	config, err := json.Marshal(site)
	if err != nil {
		return store.Site{}, err
	}
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO sites (id, config) VALUES ($1, $2) ON CONFLICT DO NOTHING`, site.ID, config)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return store.ErrSiteExists
		}
		if _, err = tx.Exec(ctx, `INSERT INTO chains (site) VALUES ($1)`, site.ID); err != nil {
			return err
		}
		return db.auditTx(ctx, tx, actor, "site_create", "site "+site.ID+" policy_version "+site.PolicyVersion)
	})
	if err != nil {
		return store.Site{}, wrap(err)
	}
	return site, nil
}

// PutSite replaces an existing site's config (store.ChangeSite).
func (db *DB) PutSite(ctx context.Context, site store.Site) (store.Site, error) {
	return db.putSite(ctx, "", site)
}

// PutSiteBy is PutSite writing the "site_update" audit entry of actor in
// the same transaction.
func (db *DB) PutSiteBy(ctx context.Context, actor string, site store.Site) (store.Site, error) {
	return db.putSite(ctx, actor, site)
}

func (db *DB) putSite(ctx context.Context, actor string, site store.Site) (store.Site, error) {
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		old, err := getSite(ctx, tx, site.ID, "FOR UPDATE")
		if err != nil {
			return err
		}
		if site, err = store.ChangeSite(old, site, db.now()); err != nil {
			return err
		}
		config, err := json.Marshal(site)
		if err != nil {
			return err
		}
		if _, err = tx.Exec(ctx, `UPDATE sites SET config = $2 WHERE id = $1`, site.ID, config); err != nil {
			return err
		}
		return db.auditTx(ctx, tx, actor, "site_update", "site "+site.ID+" policy_version "+site.PolicyVersion)
	})
	if err != nil {
		return store.Site{}, wrap(err)
	}
	return site, nil
}

// PutNotice stores the texts shown once and returns "sha256:<hex>".
func (db *DB) PutNotice(ctx context.Context, texts []byte) (string, error) {
	sum, name := store.NoticeKey(texts)
	if _, ok := db.notices.Load(name); ok {
		return name, nil
	}
	if _, err := db.pool.Exec(ctx, `INSERT INTO notices (hash, texts) VALUES ($1, $2) ON CONFLICT DO NOTHING`, sum, texts); err != nil {
		return "", wrap(err)
	}
	db.notices.Store(name, struct{}{})
	return name, nil
}

// Notice returns the texts stored under "sha256:<hex>", or store.ErrNotFound.
func (db *DB) Notice(ctx context.Context, hash string) ([]byte, error) {
	sum, ok := parseNoticeName(hash)
	if !ok {
		return nil, fmt.Errorf("notice %q: %w", hash, store.ErrNotFound)
	}
	var texts []byte
	err := db.pool.QueryRow(ctx, `SELECT texts FROM notices WHERE hash = $1`, sum).Scan(&texts)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("notice %q: %w", hash, store.ErrNotFound)
	}
	return texts, wrap(err)
}

func parseNoticeName(name string) ([]byte, bool) {
	h, ok := strings.CutPrefix(name, "sha256:")
	if !ok || len(h) != 64 {
		return nil, false
	}
	var sum [32]byte
	for i := range 32 {
		hi, lo := unhex(h[2*i]), unhex(h[2*i+1])
		if hi < 0 || lo < 0 {
			return nil, false
		}
		sum[i] = byte(hi<<4 | lo)
	}
	return sum[:], true
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// decode reads one stored record, naming it in the error.
func decode(site string, id, body []byte) (*store.StoredRecord, error) {
	r, err := store.DecodeRecord(site, id, body)
	if err != nil {
		return nil, fmt.Errorf("%w: record %s of site %s: %v", store.ErrCorrupt, store.FormatID(id), site, err)
	}
	return r, nil
}

// pages calls fn for every record of the site with an id in [from, to)
// (nil: open), in id order, a keyset page per query; fn runs between
// queries, never inside one.
func (db *DB) pages(ctx context.Context, site string, from, to []byte, limit int64, fn func(id, body []byte) error) error {
	after := from
	inclusive := true
	if after == nil {
		after = []byte{}
	}
	if to == nil {
		to = bytes.Repeat([]byte{0xff}, 17)
	}
	var seen int64
	for {
		op := ">"
		if inclusive {
			op = ">="
		}
		n := int64(pageSize)
		if limit > 0 && limit-seen < n {
			n = limit - seen
		}
		if n <= 0 {
			return nil
		}
		rows, err := db.pool.Query(ctx, `SELECT id, body FROM records WHERE site = $1 AND id `+op+` $2 AND id < $3 ORDER BY id LIMIT $4`,
			site, after, to, n)
		if err != nil {
			return wrap(err)
		}
		type row struct{ id, body []byte }
		var page []row
		var id, body []byte
		if _, err := pgx.ForEachRow(rows, []any{&id, &body}, func() error {
			page = append(page, row{bytes.Clone(id), bytes.Clone(body)})
			return nil
		}); err != nil {
			return wrap(err)
		}
		for _, r := range page {
			if err := fn(r.id, r.body); err != nil {
				return err
			}
		}
		seen += int64(len(page))
		if int64(len(page)) < n {
			return nil
		}
		after, inclusive = page[len(page)-1].id, false
	}
}

// Records calls fn for each of the site's records that q selects, oldest
// first, a page at a time. An unknown site gives store.ErrNotFound.
func (db *DB) Records(ctx context.Context, site string, q store.Query, fn func(store.Record) error) error {
	if _, err := db.Site(ctx, site); err != nil {
		return err
	}
	if q.Email != "" {
		recs, err := db.subjectRecords(ctx, db.SubjectDigest(q.Email))
		if err != nil {
			return err
		}
		for _, r := range recs {
			if r.Site == site && q.Match(&r) {
				if err := fn(r); err != nil {
					return err
				}
			}
		}
		return nil
	}
	var from, to []byte
	if !q.From.IsZero() {
		from = store.IDFloor(q.From)
	}
	if !q.To.IsZero() {
		to = store.IDFloor(q.To)
	}
	return db.pages(ctx, site, from, to, 0, func(id, body []byte) error {
		r, err := decode(site, id, body)
		if err != nil {
			return err
		}
		rec := r.Record()
		if !q.Match(&rec) {
			return nil
		}
		return fn(rec)
	})
}

// subjectRecords reads every record filed under a digest, oldest first.
func (db *DB) subjectRecords(ctx context.Context, subject []byte) ([]store.Record, error) {
	return subjectRecords(ctx, db.pool, subject, "")
}

func subjectRecords(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, subject []byte, lock string) ([]store.Record, error) {
	rows, err := q.Query(ctx, `SELECT site, id, body FROM records WHERE (subject = $1 OR subject2 = $1) ORDER BY id `+lock, subject)
	if err != nil {
		return nil, wrap(err)
	}
	var recs []store.Record
	var site string
	var id, body []byte
	_, err = pgx.ForEachRow(rows, []any{&site, &id, &body}, func() error {
		r, err := decode(site, id, body)
		if err != nil {
			return err
		}
		recs = append(recs, r.Record())
		return nil
	})
	return recs, wrap(err)
}

// subjectExtras reads a person's double-opt-in state and suppression.
func subjectExtras(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, subject []byte) (optIn []byte, suppressed bool, err error) {
	err = q.QueryRow(ctx, `SELECT (SELECT state FROM optin WHERE subject = $1),
		EXISTS (SELECT 1 FROM suppression WHERE subject = $1)`, subject).Scan(&optIn, &suppressed)
	return optIn, suppressed, wrap(err)
}

// pgIndex reads the person indexes in one transaction (store.PersonIndex).
type pgIndex struct {
	ctx context.Context
	tx  interface {
		Query(context.Context, string, ...any) (pgx.Rows, error)
		QueryRow(context.Context, string, ...any) pgx.Row
	}
}

func (ix pgIndex) byColumn(column string, digest []byte) ([]*store.StoredRecord, error) {
	rows, err := ix.tx.Query(ix.ctx, `SELECT site, id, body FROM records WHERE `+column+` = $1 ORDER BY id`, digest)
	if err != nil {
		return nil, wrap(err)
	}
	var out []*store.StoredRecord
	var site string
	var id, body []byte
	_, err = pgx.ForEachRow(rows, []any{&site, &id, &body}, func() error {
		r, err := decode(site, id, body)
		if err != nil {
			return err
		}
		if !r.Record().Tombstone {
			out = append(out, r)
		}
		return nil
	})
	return out, wrap(err)
}

// RecordsByEmail finds a rectify record under both of its addresses.
func (ix pgIndex) RecordsByEmail(digest []byte) ([]*store.StoredRecord, error) {
	return ix.byColumn("subject = $1 OR subject2", digest)
}

func (ix pgIndex) RecordsByVisitor(digest []byte) ([]*store.StoredRecord, error) {
	return ix.byColumn("visitor", digest)
}

// RecordByID looks the id up in each site's part of the primary key.
func (ix pgIndex) RecordByID(id []byte) (*store.StoredRecord, error) {
	var site string
	var body []byte
	err := ix.tx.QueryRow(ix.ctx, `SELECT r.site, r.body FROM sites s JOIN records r ON r.site = s.id AND r.id = $1 LIMIT 1`, id).Scan(&site, &body)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, wrap(err)
	}
	r, err := decode(site, id, body)
	if err != nil || r.Record().Tombstone {
		return nil, err
	}
	return r, nil
}

// Subject is Lookup by address.
func (db *DB) Subject(ctx context.Context, email string) ([]store.Record, store.SubjectState, error) {
	return db.Lookup(ctx, store.SubjectRef{Email: email})
}

// Lookup returns every record about the person ref names and their state
// (store.Store.Lookup), read in one snapshot.
func (db *DB) Lookup(ctx context.Context, ref store.SubjectRef) ([]store.Record, store.SubjectState, error) {
	var recs []store.Record
	var st store.SubjectState
	err := pgx.BeginTxFunc(ctx, db.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		p, err := db.FindPerson(ref, pgIndex{ctx, tx})
		if err != nil {
			return err
		}
		recs = p.Records()
		var optIn []byte
		if emails := p.EmailDigests(); len(emails) > 0 {
			if err := tx.QueryRow(ctx, `SELECT state FROM optin WHERE subject = $1`, emails[0]).Scan(&optIn); err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
		}
		var suppressed bool
		all := append(append([][]byte{}, p.EmailDigests()...), p.VisitorDigests()...)
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM suppression WHERE subject = ANY($1))`, all).Scan(&suppressed); err != nil {
			return err
		}
		st, err = p.State(optIn, suppressed)
		return err
	})
	return recs, st, wrap(err)
}

// Subjects calls fn once for each person with a signup on the site, for the
// signups export (see store.Store.Subjects), in digest order, a page of
// people at a time.
func (db *DB) Subjects(ctx context.Context, site string, q store.Query, fn func(store.SubjectState) error) error {
	if _, err := db.Site(ctx, site); err != nil {
		return err
	}
	ix := pgIndex{ctx, db.pool}
	var only []byte
	if q.Email != "" {
		// An address corrected since is shown under its newest address.
		_, _, current, err := db.LinkedAddresses(ix, db.SubjectDigest(q.Email))
		if err != nil {
			return err
		}
		only = current
	}
	after := []byte{}
	for {
		var subjects [][]byte
		var rows pgx.Rows
		var err error
		if only != nil {
			rows, err = db.pool.Query(ctx, `SELECT $1::bytea`, only)
		} else {
			rows, err = db.pool.Query(ctx, `SELECT s FROM (
				SELECT subject AS s FROM records WHERE subject > $1 AND site = $2
				UNION SELECT subject2 FROM records WHERE subject2 > $1 AND site = $2) d
				ORDER BY s LIMIT 256`, after, site)
		}
		if err != nil {
			return wrap(err)
		}
		var s []byte
		if _, err := pgx.ForEachRow(rows, []any{&s}, func() error { subjects = append(subjects, bytes.Clone(s)); return nil }); err != nil {
			return wrap(err)
		}
		for _, subject := range subjects {
			all, err := db.subjectRecords(ctx, subject)
			if err != nil {
				return err
			}
			optIn, suppressed, err := subjectExtras(ctx, db.pool, subject)
			if err != nil {
				return err
			}
			if store.HasRectify(all) {
				// One row per person, under their newest address, with the
				// records of every address they had.
				linked, digests, current, err := db.LinkedAddresses(ix, subject)
				if err != nil {
					return err
				}
				if !bytes.Equal(current, subject) {
					continue
				}
				all = linked
				for _, d := range digests {
					o, sup, err := subjectExtras(ctx, db.pool, d)
					if err != nil {
						return err
					}
					if optIn == nil {
						optIn = o
					}
					suppressed = suppressed || sup
				}
			}
			st, ok, err := store.SubjectRow(site, q, all, optIn, suppressed)
			if err != nil {
				return err
			}
			if ok {
				if err := fn(st); err != nil {
					return err
				}
			}
		}
		if only != nil || len(subjects) < 256 {
			return nil
		}
		after = subjects[len(subjects)-1]
	}
}

// Suppressed tells whether an address was erased and may not be re-added.
func (db *DB) Suppressed(ctx context.Context, email string) (bool, error) {
	var found bool
	err := db.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM suppression WHERE subject = $1)`, db.SubjectDigest(email)).Scan(&found)
	return found, wrap(err)
}

// SetDoubleOptIn records a step of double opt-in (store.OptInChange).
func (db *DB) SetDoubleOptIn(ctx context.Context, email, state, ip string) error {
	subject := db.SubjectDigest(email)
	if _, err := store.OptInChange(nil, state, ip, db.now()); err != nil {
		return err
	}
	return wrap(pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		var old []byte
		err := tx.QueryRow(ctx, `SELECT state FROM optin WHERE subject = $1 FOR UPDATE`, subject).Scan(&old)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		v, err := store.OptInChange(old, state, ip, db.now())
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO optin (subject, state) VALUES ($1, $2)
			ON CONFLICT (subject) DO UPDATE SET state = excluded.state`, subject, v)
		return err
	}))
}

// Erase erases the person ref names (store.Store.Erase) in one
// transaction with its audit entry. It first locks every chain head, as an
// append does, so no record naming the person is committed between the
// look-up and the suppression: later appends wait and then see the list.
func (db *DB) Erase(ctx context.Context, actor string, ref store.SubjectRef) (store.ErasureReport, error) {
	rep, _, err := db.EraseWith(ctx, actor, ref, store.EraseOptions{})
	return rep, err
}

// EraseWith is Erase plus the outbox items opts makes from what was erased
// (the subject.erased webhook events), in the erasure's transaction.
func (db *DB) EraseWith(ctx context.Context, actor string, ref store.SubjectRef, opts store.EraseOptions) (store.ErasureReport, []store.OutboxItem, error) {
	var rep store.ErasureReport
	var queued []store.OutboxItem
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		queued = nil
		if _, err := tx.Exec(ctx, `SELECT site FROM chains ORDER BY site FOR UPDATE`); err != nil {
			return err
		}
		p, err := db.FindPerson(ref, pgIndex{ctx, tx})
		if err != nil {
			return err
		}
		changed, r := p.Erase(ref)
		rep = r
		b := &pgx.Batch{}
		for _, sr := range changed {
			rec := sr.Record()
			id, err := store.ParseID(rec.ID)
			if err != nil {
				return err
			}
			b.Queue(`UPDATE records SET body = $3 WHERE site = $1 AND id = $2`, rec.Site, id, sr.Encode())
		}
		now := db.now()
		for _, e := range p.EmailDigests() {
			var old []byte
			err := tx.QueryRow(ctx, `SELECT state FROM optin WHERE subject = $1 FOR UPDATE`, e).Scan(&old)
			switch {
			case err == nil:
				v, err := store.OptInErased(old)
				if err != nil {
					return err
				}
				b.Queue(`UPDATE optin SET state = $2 WHERE subject = $1`, e, v)
			case !errors.Is(err, pgx.ErrNoRows):
				return err
			}
			eraseOutbox(b, e, now)
		}
		digests := append(append([][]byte{}, p.EmailDigests()...), p.VisitorDigests()...)
		if len(digests) > 0 {
			b.Queue(`INSERT INTO suppression (subject, at_ns, reason) SELECT d, $2, $3 FROM unnest($1::bytea[]) AS d
				ON CONFLICT DO NOTHING`, digests, now.UnixNano(), store.SuppressionReason)
		}
		b.Queue(`INSERT INTO audit (at_ns, token, action, detail) VALUES ($1, $2, 'erase', $3)`,
			now.UnixNano(), actor, store.ErasureAuditDetail(rep))
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		rep.SuppressedAt = now.UTC()
		if len(digests) > 0 {
			var at int64
			if err := tx.QueryRow(ctx, `SELECT at_ns FROM suppression WHERE subject = $1`, digests[0]).Scan(&at); err != nil {
				return err
			}
			rep.SuppressedAt = time.Unix(0, at).UTC()
		}
		if opts.Outbox != nil {
			items, err := opts.Outbox(erasedSubject(rep, p.Records(), now))
			if err != nil {
				return fmt.Errorf("outbox items of an erasure: %w", err)
			}
			for _, it := range items {
				ok, err := addItem(ctx, tx, &it, nil, now)
				if err != nil {
					return err
				}
				if ok {
					queued = append(queued, it)
				}
			}
		}
		return nil
	})
	if err != nil {
		return store.ErasureReport{}, nil, wrap(err)
	}
	if len(queued) > 0 {
		db.notifyOutbox()
	}
	return rep, queued, nil
}
