package store

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Record is one consent proof. Its JSON is the API's "A consent record".
type Record struct {
	ID            string            `json:"id"`
	RecordedAt    time.Time         `json:"recorded_at"`
	Site          string            `json:"site"`
	Event         string            `json:"event"`  // grant, deny, partial, withdraw, confirm
	Source        string            `json:"source"` // banner, preferences, signup, unsubscribe, api, admin, double_opt_in
	Basis         string            `json:"basis"`  // explicit, implied
	Email         string            `json:"email"`
	VisitorID     string            `json:"visitor_id"`
	Country       string            `json:"country"`
	Regime        string            `json:"regime"`
	GeoDB         string            `json:"geo_db"`
	NoticeVersion string            `json:"notice_version"`
	NoticeHash    string            `json:"notice_hash"`
	WidgetBuild   string            `json:"widget_build"`
	Locale        string            `json:"locale,omitempty"`
	Choices       map[string]string `json:"choices"`
	PageURL       string            `json:"page_url"`
	IP            string            `json:"ip"`
	UserAgent     string            `json:"user_agent"`
	GPC           bool              `json:"gpc"`
	DNT           bool              `json:"dnt"`
	Name          string            `json:"name,omitempty"`     // a signup's name: personal, erased too
	Confirms      string            `json:"confirms,omitempty"` // a confirm record's signup id
	// Reason is why an admin recorded a withdrawal or a rectification on the
	// person's request; it is proof and enters the hash in clear.
	Reason string `json:"reason,omitempty"`
	// NewEmail is the corrected address a rectify record links Email to:
	// personal like Email (a digest in the hash, erased too).
	NewEmail  string `json:"new_email,omitempty"`
	PrevHash  string `json:"prev_hash"`
	Hash      string `json:"hash"`
	Erased    bool   `json:"erased,omitempty"`
	Tombstone bool   `json:"tombstone,omitempty"`
}

// NormalizeEmail is the one way Assent normalises an address: trimmed and
// lower-cased whole.
func NormalizeEmail(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// TruncateIP keeps the network part of an address: IPv4 /24, IPv6 /48, an
// IPv4-mapped IPv6 address unmapped first. An invalid address gives "".
func TruncateIP(ip netip.Addr) string {
	if !ip.IsValid() {
		return ""
	}
	ip = ip.Unmap().WithZone("")
	bits := 48
	if ip.Is4() {
		bits = 24
	}
	p, err := ip.Prefix(bits)
	if err != nil {
		return ""
	}
	return p.Addr().String()
}

// truncateIPString truncates an address given as text; anything that does
// not parse is dropped rather than stored raw.
func truncateIPString(s string) string {
	if s == "" {
		return ""
	}
	ip, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return ""
	}
	return TruncateIP(ip)
}

// appendReq is one record waiting for the writer.
type appendReq struct {
	ctx     context.Context
	rec     storedRecord
	subject []byte // email digest for the subject index; nil for none
	tmpl    template
	body    []byte // encodeBody(&rec)
	outbox  func(Record) ([]OutboxItem, error)
	optIn   string // a double-opt-in step stored with the record (optin.go)
	done    chan appendResult
	// unsubscribe: store nothing when the subject's signup purposes on the
	// site are already in the states this record sets (see Unsubscribe).
	unsubscribe bool
	// rights: a withdrawal or rectification on request (rights.go), or nil.
	rights *rightsReq
}

// eraseFields turns a prepared record into one stored already erased: the
// personal fields blank, their digests (which the hash covers) kept.
func (req *appendReq) eraseFields() {
	r := &req.rec
	r.Erased = true
	r.Email, r.Name, r.VisitorID, r.IP, r.UserAgent, r.NewEmail = "", "", "", "", "", ""
	req.body = encodeBody(r)
}

// dropVisitor removes the visitor id, digest included, from a prepared
// record: a new signup from a browser whose visitor id was erased must not
// link the new address to the erased person.
func (req *appendReq) dropVisitor() {
	r := &req.rec
	r.VisitorID, r.digests.visitorID = "", nil
	req.tmpl = newTemplate(r)
	req.body = encodeBody(r)
}

type appendResult struct {
	rec    Record
	outbox []OutboxItem
	err    error
}

// Append stores a record durably and returns it as stored. It normalises
// Email (NormalizeEmail), truncates IP (TruncateIP; an address that does not
// parse is dropped), replaces invalid UTF-8, and assigns ID, RecordedAt
// (server UTC, ns) and PrevHash/Hash on the site's chain. It returns only
// after the record's batch was committed with fsync.
//
// Suppression is enforced here, in the writer's transaction, whatever the
// caller sent: a signup (Source "signup") whose Email is on the suppression
// list stores nothing: it returns ErrSuppressed and writes a
// "suppressed_signup" audit entry that does not name the address. Any other
// record whose Email or VisitorID is on the list is stored already erased
// (as Erase leaves a record), and a signup from a suppressed visitor id is
// stored without it. An unknown site gives ErrNotFound.
//
// Cancellation: if ctx is done before the writer takes the record into a
// batch, nothing is stored and Append returns ctx.Err(). Once the record is in
// a batch its commit is not interrupted: Append waits for it and returns the
// stored record. So an error always means "not stored", and nil means
// "stored and synced".
func (s *Store) Append(ctx context.Context, rec Record) (Record, error) {
	rec.Erased = false
	res := s.enqueue(s.newAppendReq(ctx, rec, nil))
	return res.rec, res.err
}

// AppendWith is Append plus what opts commits in the same transaction: the
// outbox items made from the stored record (AppendOptions.Outbox). It
// returns the items as stored; items dropped by their Cap are left out. An
// error from opts.Outbox fails the whole batch, so nothing of it is stored.
func (s *Store) AppendWith(ctx context.Context, rec Record, opts AppendOptions) (Record, []OutboxItem, error) {
	rec.Erased = false
	req := s.newAppendReq(ctx, rec, nil)
	req.outbox, req.optIn = opts.Outbox, opts.OptIn
	if req.optIn != "" && req.optIn != "pending" {
		return Record{}, nil, invalid("double_opt_in", "AppendWith takes the step \"pending\"; Confirm makes \"confirmed\"")
	}
	res := s.enqueue(req)
	return res.rec, res.outbox, res.err
}

// newAppendReq does, in the caller's goroutine, the part of the work that
// does not depend on the chain, so the single writer does as little as it
// can. subject overrides the email digest for records that name a person
// only by digest (an unsubscribe of an erased address).
func (s *Keyring) newAppendReq(ctx context.Context, rec Record, subject []byte) *appendReq {
	rec.Email = NormalizeEmail(rec.Email)
	rec.IP = truncateIPString(rec.IP)
	rec.NewEmail = NormalizeEmail(rec.NewEmail)
	for _, p := range append(rec.strings(), &rec.Reason, &rec.NewEmail) {
		*p = strings.ToValidUTF8(*p, "\uFFFD")
	}
	choices := make(map[string]string, len(rec.Choices))
	for k, v := range rec.Choices {
		choices[strings.ToValidUTF8(k, "\uFFFD")] = strings.ToValidUTF8(v, "\uFFFD")
	}
	rec.Choices = choices
	rec.ID, rec.RecordedAt, rec.PrevHash, rec.Hash, rec.Tombstone = "", time.Time{}, "", "", false
	req := &appendReq{ctx: ctx, done: make(chan appendResult, 1)}
	if rec.Erased {
		// Only Unsubscribe appends erased records: the person was erased and
		// is known by digest alone, so the record carries that digest and no
		// personal field.
		rec.Email, rec.Name, rec.VisitorID, rec.IP, rec.UserAgent, rec.NewEmail = "", "", "", "", "", ""
		req.rec.digests = digests{email: subject}
	} else {
		req.rec.digests = s.digester.digests(&rec)
	}
	req.rec.Record = rec
	req.subject = req.rec.digests.email
	req.tmpl = newTemplate(&req.rec)
	req.body = encodeBody(&req.rec)
	return req
}

func (s *Store) enqueue(req *appendReq) appendResult {
	if err := req.ctx.Err(); err != nil {
		return appendResult{err: err}
	}
	s.mu.RLock()
	if s.closed || s.queue == nil {
		s.mu.RUnlock()
		if s.queue == nil {
			return appendResult{err: fmt.Errorf("append: ledger %s is open read-only", s.path)}
		}
		return appendResult{err: ErrClosed}
	}
	s.queue <- req
	s.mu.RUnlock()
	return <-req.done
}

// writerYields bounds the yields after a commit (see writer); measured with
// 64 writers on 2 cores, it raises the mean batch from ~31 to ~47 records.
const writerYields = 3

// writer is the one goroutine that appends records. It takes whatever has
// queued, writes it in one transaction, commits with fsync and only then
// answers every caller of the batch. Under light load a batch is one record
// and is committed at once; under heavy load batches grow to whatever queued
// during the previous commit, so throughput follows the load without a timer.
func (s *Store) writer() {
	defer s.writerW.Done()
	batch := make([]*appendReq, 0, s.opts.maxBatch)
	for req := range s.queue {
		batch = req.withGroup(batch[:0])
	fill:
		for len(batch) < s.opts.maxBatch {
			select {
			case r, ok := <-s.queue:
				if !ok {
					break fill
				}
				batch = r.withGroup(batch)
			default:
				break fill
			}
		}
		s.commit(batch)
		// The writers just answered are runnable but not yet running: yield
		// a few times, while that makes the queue grow, so their next records
		// join the next batch instead of waiting a whole commit for the one
		// after. No timer: an idle ledger commits a lone record at once.
		for i, n := 0, -1; i < writerYields && n != len(s.queue); i++ {
			n = len(s.queue)
			runtime.Gosched()
		}
	}
}

// commit writes one batch. Requests whose context is already done are
// answered with its error and skipped; the others are answered after the
// commit, all with its error if it fails.
func (s *Store) commit(batch []*appendReq) {
	s.batches.Add(1)
	s.batched.Add(uint64(len(batch)))
	results := make([]appendResult, len(batch))
	// A damaged page can make bbolt panic mid-batch: fail the batch (its
	// transaction rolls back), not the process.
	err := guard(func() error { return s.writeBatch(batch, results) })
	for i, req := range batch {
		if err != nil && results[i].err == nil {
			results[i] = appendResult{err: fmt.Errorf("append: %w", err)}
		}
		req.done <- results[i]
	}
}

func (s *Store) writeBatch(batch []*appendReq, results []appendResult) error {
	if err := s.Failed(); err != nil {
		return err
	}
	rnd := make([]byte, 8*len(batch))
	if _, err := rand.Read(rnd); err != nil {
		return err
	}
	tx, err := s.db.Begin(true)
	if err != nil {
		return s.failWith(err)
	}
	defer tx.Rollback()
	w := newChainWriter(tx)
	suppression := tx.Bucket(bucketSuppression)
	var ob *outboxTx // opened by the first record with outbox items
	for i, req := range batch {
		if err := req.ctx.Err(); err != nil {
			results[i].err = err
			continue
		}
		if done, err := req.checkRights(tx); err != nil || done {
			results[i].err = err
			continue
		}
		r := &req.rec
		emailSuppressed := req.subject != nil && suppression.Get(req.subject) != nil
		visitorSuppressed := r.digests.visitorID != nil && suppression.Get(r.digests.visitorID) != nil
		if err := (&PendingRecord{req: req}).Suppress(emailSuppressed, visitorSuppressed); err != nil {
			results[i].err = err
			if err := putAudit(tx, s.now(), systemActor, "suppressed_signup", "site="+r.Site); err != nil {
				return err
			}
			continue
		}
		if err := checkOptIn(tx, req); err != nil {
			results[i].err = err
			var ac *AlreadyConfirmedError
			if errors.As(err, &ac) {
				continue
			}
			return err
		}
		if req.unsubscribe && req.subject != nil {
			last, done, err := alreadySet(tx, req)
			if err != nil {
				return err
			}
			if done {
				results[i].rec = last
				continue
			}
		}
		ns := s.now().UnixNano()
		if ns <= s.lastNs {
			ns = s.lastNs + 1
		}
		rec, err := w.append(req, makeID(ns, binary.BigEndian.Uint64(rnd[8*i:])))
		if err != nil {
			results[i].err = err
			if err == ErrNotFound {
				continue
			}
			return err
		}
		s.lastNs = ns
		results[i].rec = rec
		if err := putOptIn(tx, req, rec); err != nil {
			return err
		}
		if err := req.auditRights(tx, s.now()); err != nil {
			return err
		}
		if req.outbox == nil {
			continue
		}
		items, err := req.outbox(rec)
		if err != nil {
			return fmt.Errorf("outbox items of a %s record: %w", rec.Event, err)
		}
		if ob == nil && len(items) > 0 {
			if ob, err = openOutbox(tx); err != nil {
				return err
			}
		}
		for _, it := range items {
			it.Record, it.subject = rec.ID, req.subject
			if it.Site == "" {
				it.Site = rec.Site
			}
			ok, err := ob.add(&it, rec.RecordedAt)
			if err != nil {
				return fmt.Errorf("outbox item of a %s record: %w", rec.Event, err)
			}
			if ok {
				results[i].outbox = append(results[i].outbox, it)
			}
		}
	}
	if err := w.flush(); err != nil {
		return err
	}
	if ob != nil {
		if err := ob.flush(); err != nil {
			return err
		}
	}
	if s.opts.DiscardCommits {
		return nil // the deferred Rollback discards the batch
	}
	if err := s.commitTx(tx); err != nil {
		return err
	}
	if ob != nil && ob.dirty {
		s.notifyOutbox()
	}
	return nil
}

// chainWriter appends records to the sites' chains within one transaction,
// keeping each touched chain's head in memory until flush.
type chainWriter struct {
	tx       *bolt.Tx
	heads    map[string]*chainHead
	buckets  map[string]*bolt.Bucket
	subjects *bolt.Bucket
	visitors *bolt.Bucket
}

func newChainWriter(tx *bolt.Tx) *chainWriter {
	return &chainWriter{tx: tx, heads: map[string]*chainHead{}, buckets: map[string]*bolt.Bucket{},
		subjects: tx.Bucket(bucketSubjects), visitors: tx.Bucket(bucketVisitors)}
}

// alreadySet tells whether the subject's records on the request's site
// already hold every state the request sets, and returns the latest of them.
// It reads in the writer's transaction, so it sees records of the same
// batch too.
func alreadySet(tx *bolt.Tx, req *appendReq) (Record, bool, error) {
	recs, err := getSubjectRecords(tx, req.subject)
	if err != nil {
		return Record{}, false, err
	}
	last, ok := LatestIfSet(recs, req.rec.Site, req.rec.Choices)
	return last, ok, nil
}

// chain returns the site's record bucket and head, loading them once per
// transaction. An unknown site gives ErrNotFound.
func (w *chainWriter) chain(site string) (*bolt.Bucket, *chainHead, error) {
	if b := w.buckets[site]; b != nil {
		return b, w.heads[site], nil
	}
	if w.tx.Bucket(bucketSites).Get([]byte(site)) == nil {
		return nil, nil, ErrNotFound
	}
	b, err := w.tx.Bucket(bucketRecords).CreateBucketIfNotExists([]byte(site))
	if err != nil {
		return nil, nil, err
	}
	b.FillPercent = appendFill
	h := &chainHead{}
	if v := w.tx.Bucket(bucketChains).Get([]byte(site)); v != nil {
		if *h, err = decodeHead(v); err != nil {
			return nil, nil, fmt.Errorf("%w: chain head of %q: %v", ErrCorrupt, site, err)
		}
	}
	w.buckets[site], w.heads[site] = b, h
	return b, h, nil
}

// append links a prepared record after its site's head with the given id,
// stores it and its subject index entry, and returns it as stored.
func (w *chainWriter) append(req *appendReq, id []byte) (Record, error) {
	r := &req.rec
	b, head, err := w.chain(r.Site)
	if err != nil {
		return Record{}, err
	}
	r.ID = formatID(id)
	r.RecordedAt = time.Unix(0, idTime(id)).UTC()
	r.prevHash = head.hash
	r.hash = req.tmpl.hash(r.ID, r.prevHash, r.RecordedAt)
	r.PrevHash, r.Hash = hexOrEmpty(r.prevHash), hex.EncodeToString(r.hash)
	if err := b.Put(id, appendTail(req.body, r.prevHash, r.hash)); err != nil {
		return Record{}, err
	}
	if req.subject != nil {
		if err := w.subjects.Put(subjectKey(req.subject, id), []byte(r.Site)); err != nil {
			return Record{}, err
		}
	}
	if r.digests.newEmail != nil {
		// A rectify record is filed under both addresses: the look-up of
		// either finds it, and through it the other's records.
		if err := w.subjects.Put(subjectKey(r.digests.newEmail, id), []byte(r.Site)); err != nil {
			return Record{}, err
		}
	}
	if r.digests.visitorID != nil {
		if err := w.visitors.Put(subjectKey(r.digests.visitorID, id), []byte(r.Site)); err != nil {
			return Record{}, err
		}
	}
	head.count++
	head.last, head.hash = id, r.hash
	return r.Record, nil
}

func (w *chainWriter) flush() error {
	chains := w.tx.Bucket(bucketChains)
	for site, h := range w.heads {
		if err := chains.Put([]byte(site), h.encode()); err != nil {
			return err
		}
	}
	return nil
}

func subjectKey(subject, id []byte) []byte {
	return append(append(make([]byte, 0, len(subject)+len(id)), subject...), id...)
}

// WriteStats returns how many group commits the writer made and how many
// records they carried, for metrics: their ratio is the mean batch size.
func (s *Store) WriteStats() (commits, records uint64) {
	return s.batches.Load(), s.batched.Load()
}
