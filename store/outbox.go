package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
)

// The outbox holds what Assent must tell the outside world about what it
// stored: confirmation mails now, webhook deliveries later. An item written
// with a record (AppendWith) is committed in the same transaction as that
// record, so after a crash an item is on disk if and only if its record is.
// A background sender takes due items (OutboxDue), tries them and reports
// each attempt (OutboxAttempt): sent, rescheduled or failed.

// Outbox is what every backend of the Ledger offers for the outbox; the
// bbolt Store's methods below document each.
type Outbox interface {
	AppendWith(ctx context.Context, rec Record, opts AppendOptions) (Record, []OutboxItem, error)
	Enqueue(ctx context.Context, items ...OutboxItem) ([]OutboxItem, error)
	OutboxDue(ctx context.Context, kind string, now time.Time, limit int) ([]OutboxItem, time.Time, error)
	OutboxAttempt(ctx context.Context, id string, a Attempt) (OutboxItem, error)
	OutboxList(ctx context.Context, q OutboxQuery) ([]OutboxItem, error)
	OutboxItemByID(ctx context.Context, id string) (OutboxItem, error)
	OutboxCounts(ctx context.Context, kind string) (map[string]int, error)
	// OutboxWake signals after a commit that queued items (in this
	// process; senders also poll, for items queued by other replicas).
	OutboxWake() <-chan struct{}
}

var _ Outbox = (*Store)(nil)

// Outbox item states.
const (
	OutboxQueued = "queued" // waiting for its next attempt
	OutboxSent   = "sent"   // delivered; final
	OutboxFailed = "failed" // given up (or erased); final
)

// OutboxItem is one thing to send.
type OutboxItem struct {
	ID   string `json:"id"`   // set by the store: 16 hex digits, in creation order
	Kind string `json:"kind"` // "mail", "webhook", …: which sender takes it
	Site string `json:"site"`
	// Key groups items of one kind: a mail's recipient (a keyed digest,
	// never the address), a webhook endpoint's id. Cap counts per group.
	Key string `json:"key,omitempty"`
	// Ordered items of the same kind and key are handed out one at a time
	// in creation order: a later one is not due while an earlier one is
	// still queued (in-order delivery per endpoint).
	Ordered bool `json:"ordered,omitempty"`
	// Record is the id of the record the item belongs to; set by the store
	// for items written with AppendWith.
	Record  string          `json:"record,omitempty"`
	Payload json.RawMessage `json:"payload"` // what the sender needs, as JSON
	State   string          `json:"state"`
	// Attempts made so far; LastError and LastCode are the last failure's
	// answer (an SMTP reply, an HTTP status code); a success clears them.
	Attempts      int       `json:"attempts"`
	LastError     string    `json:"last_error,omitempty"`
	LastCode      int       `json:"last_code,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
	NextAttemptAt time.Time `json:"next_attempt_at,omitzero"` // queued items only
	DoneAt        time.Time `json:"done_at,omitzero"`         // when it was sent or given up

	// Cap, when set, drops the item (not its record) if Cap.N items of the
	// same kind and key were created in the Cap.Per before it: at most 3
	// confirmation mails per address per day. Not stored.
	Cap OutboxCap `json:"-"`
	// subject is the keyed digest of the person the item is about (the
	// record's email), so that erasure reaches the item's payload too.
	subject []byte
}

// OutboxCap bounds how many items one group gets in a period.
type OutboxCap struct {
	N   int
	Per time.Duration
}

// AppendOptions are what AppendWith commits together with a record.
type AppendOptions struct {
	// Outbox, when set, is called by the writer inside the record's
	// transaction with the record as stored (id, time, hash), and returns
	// the items to queue with it. It runs in the one writer goroutine while
	// a commit is open: it must be quick and must not call the Store.
	Outbox func(Record) ([]OutboxItem, error)
	// OptIn "pending" marks a signup that waits for its double-opt-in
	// confirmation (optin.go), in the same transaction.
	OptIn string
}

// Outbox bucket layout (in outbox/):
//
//	items/    <seq 8>                       OutboxItem as JSON
//	due/      <next attempt unix ns 8><seq 8>   queued items by due time
//	queue/    <group><seq 8>                queued ordered items per group
//	groups/   <group><seq 8>                every item per group (for Cap)
//	sites/    <len 1><site id><seq 8>       every item per site
//	subjects/ <email digest 32><seq 8>      items about a person (erasure)
//	counts    {"mail":{"queued":1,…},…}     items per kind and state
//
// where <group> is <len 1><kind><len 1><key>.
var (
	outboxItems    = []byte("items")
	outboxDue      = []byte("due")
	outboxQueue    = []byte("queue")
	outboxGroups   = []byte("groups")
	outboxSites    = []byte("sites")
	outboxSubjects = []byte("subjects")
	outboxCounts   = []byte("counts")
	outboxBuckets  = [][]byte{outboxItems, outboxDue, outboxQueue, outboxGroups, outboxSites, outboxSubjects}
)

// migrateOutbox (schema 1 → 2) adds the outbox.
func migrateOutbox(tx *bolt.Tx) error {
	b, err := tx.CreateBucketIfNotExists(bucketOutbox)
	if err != nil {
		return err
	}
	for _, name := range outboxBuckets {
		if _, err := b.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	return nil
}

// outboxTx is the outbox inside one transaction.
type outboxTx struct {
	root                                       *bolt.Bucket
	items, due, queue, groups, sites, subjects *bolt.Bucket
	counts                                     map[string]map[string]int
	dirty                                      bool
}

func openOutbox(tx *bolt.Tx) (*outboxTx, error) {
	root := tx.Bucket(bucketOutbox)
	if root == nil {
		return nil, fmt.Errorf("%w: no outbox bucket", ErrCorrupt)
	}
	o := &outboxTx{root: root}
	for _, p := range []struct {
		b    **bolt.Bucket
		name []byte
	}{{&o.items, outboxItems}, {&o.due, outboxDue}, {&o.queue, outboxQueue}, {&o.groups, outboxGroups},
		{&o.sites, outboxSites}, {&o.subjects, outboxSubjects}} {
		if *p.b = root.Bucket(p.name); *p.b == nil {
			return nil, fmt.Errorf("%w: no outbox bucket %q", ErrCorrupt, p.name)
		}
	}
	o.counts = map[string]map[string]int{}
	if v := root.Get(outboxCounts); v != nil {
		if err := json.Unmarshal(v, &o.counts); err != nil {
			return nil, fmt.Errorf("%w: outbox counts: %v", ErrCorrupt, err)
		}
	}
	return o, nil
}

func (o *outboxTx) count(kind, state string, d int) {
	m := o.counts[kind]
	if m == nil {
		m = map[string]int{}
		o.counts[kind] = m
	}
	m[state] += d
	o.dirty = true
}

func (o *outboxTx) flush() error {
	if !o.dirty {
		return nil
	}
	v, err := json.Marshal(o.counts)
	if err != nil {
		return err
	}
	return o.root.Put(outboxCounts, v)
}

func outboxGroup(kind, key string) []byte {
	b := append([]byte{byte(len(kind))}, kind...)
	b = append(b, byte(len(key)))
	return append(b, key...)
}

func outboxSiteKey(site string) []byte { return append([]byte{byte(len(site))}, site...) }

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func (it *OutboxItem) validate() error {
	switch {
	case it.Kind == "" || len(it.Kind) > 32:
		return invalid("kind", "required, at most 32 bytes")
	case len(it.Key) > 200:
		return invalid("key", "at most 200 bytes")
	case len(it.Site) > 255:
		return invalid("site", "at most 255 bytes")
	case it.Payload != nil && !json.Valid(it.Payload):
		return invalid("payload", "not JSON")
	}
	return nil
}

// add stores a new item, queued and due at once (or at NextAttemptAt if
// set). It returns false, storing nothing, when the item's Cap is reached.
func (o *outboxTx) add(it *OutboxItem, now time.Time) (bool, error) {
	if err := it.validate(); err != nil {
		return false, err
	}
	group := outboxGroup(it.Kind, it.Key)
	if it.Cap.N > 0 {
		since := now.Add(-it.Cap.Per)
		n := 0
		c := o.groups.Cursor()
		// Newest first: stop at the first item older than the period.
		k, _ := c.Seek(append(bytes.Clone(group), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff))
		if k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
		for ; k != nil && bytes.HasPrefix(k, group) && len(k) == len(group)+8; k, _ = c.Prev() {
			old, err := o.get(k[len(group):])
			if err != nil {
				return false, err
			}
			if old.CreatedAt.Before(since) {
				break
			}
			if n++; n >= it.Cap.N {
				return false, nil
			}
		}
	}
	seq, err := o.items.NextSequence()
	if err != nil {
		return false, err
	}
	id := u64(seq)
	it.ID = fmt.Sprintf("%016x", seq)
	it.State, it.Attempts, it.LastError, it.LastCode, it.DoneAt = OutboxQueued, 0, "", 0, time.Time{}
	it.CreatedAt = now.UTC()
	if it.NextAttemptAt.IsZero() {
		it.NextAttemptAt = it.CreatedAt
	}
	if err := o.put(id, it); err != nil {
		return false, err
	}
	if err := o.due.Put(dueKey(it.NextAttemptAt, id), nil); err != nil {
		return false, err
	}
	if it.Ordered {
		if err := o.queue.Put(cat(group, id), nil); err != nil {
			return false, err
		}
	}
	if err := o.groups.Put(cat(group, id), nil); err != nil {
		return false, err
	}
	if err := o.sites.Put(cat(outboxSiteKey(it.Site), id), nil); err != nil {
		return false, err
	}
	if it.subject != nil {
		if err := o.subjects.Put(cat(it.subject, id), nil); err != nil {
			return false, err
		}
	}
	o.count(it.Kind, OutboxQueued, 1)
	return true, nil
}

func dueKey(at time.Time, id []byte) []byte {
	return cat(u64(uint64(max(at.UnixNano(), 0))), id)
}

func (o *outboxTx) get(id []byte) (OutboxItem, error) {
	var st storedItem
	v := o.items.Get(id)
	if v == nil {
		return OutboxItem{}, ErrNotFound
	}
	if err := json.Unmarshal(v, &st); err != nil {
		return OutboxItem{}, fmt.Errorf("%w: outbox item %x: %v", ErrCorrupt, id, err)
	}
	if string(st.Payload) == "null" {
		st.Payload = nil // erased
	}
	st.OutboxItem.subject = st.Subject
	return st.OutboxItem, nil
}

// storedItem is an item's JSON in items/: the public fields plus the
// subject digest (erasure).
type storedItem struct {
	OutboxItem
	Subject []byte `json:"subject,omitempty"`
}

func (o *outboxTx) put(id []byte, it *OutboxItem) error {
	v, err := json.Marshal(storedItem{OutboxItem: *it, Subject: it.subject})
	if err != nil {
		return err
	}
	return o.items.Put(id, v)
}

func parseOutboxID(s string) ([]byte, error) {
	if len(s) != 16 {
		return nil, ErrNotFound
	}
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		return nil, ErrNotFound
	}
	return u64(v), nil
}

// Attempt is the outcome of one try to send an outbox item.
type Attempt struct {
	// Err is the failure ("" = sent). Code is the remote answer's code (an
	// SMTP reply code, an HTTP status), 0 if there was none.
	Err  string
	Code int
	// Retry is when to try again after a failure; zero gives up: the item
	// becomes failed.
	Retry time.Time
}

// OutboxAttempt records an attempt at a queued item: it becomes sent,
// queued again for Retry, or failed. An item that is no longer queued (sent,
// failed, erased meanwhile) is left as it is and returned unchanged; an
// unknown id gives ErrNotFound.
func (s *Store) OutboxAttempt(ctx context.Context, id string, a Attempt) (OutboxItem, error) {
	return s.changeOutboxItem(id, func(o *outboxTx, key []byte, it *OutboxItem) (bool, error) {
		if it.State != OutboxQueued {
			return false, nil
		}
		now := s.now().UTC()
		if err := o.due.Delete(dueKey(it.NextAttemptAt, key)); err != nil {
			return false, err
		}
		it.Attempts++
		it.LastError, it.LastCode = truncateUTF8(a.Err, 1000), a.Code
		switch {
		case a.Err == "":
			it.State, it.DoneAt, it.NextAttemptAt = OutboxSent, now, time.Time{}
		case a.Retry.IsZero():
			it.State, it.DoneAt, it.NextAttemptAt = OutboxFailed, now, time.Time{}
		default:
			it.NextAttemptAt = a.Retry.UTC()
			if err := o.due.Put(dueKey(it.NextAttemptAt, key), nil); err != nil {
				return false, err
			}
		}
		if it.State != OutboxQueued {
			if err := o.queue.Delete(cat(outboxGroup(it.Kind, it.Key), key)); err != nil {
				return false, err
			}
			o.count(it.Kind, OutboxQueued, -1)
			o.count(it.Kind, it.State, 1)
		}
		return true, nil
	})
}

// changeOutboxItem loads the item id in one transaction and lets change
// alter it; when change reports a change, the item and the outbox counts
// are written back in that transaction. An unknown id gives ErrNotFound.
func (s *Store) changeOutboxItem(id string, change func(o *outboxTx, key []byte, it *OutboxItem) (bool, error)) (OutboxItem, error) {
	key, err := parseOutboxID(id)
	if err != nil {
		return OutboxItem{}, err
	}
	var it OutboxItem
	err = s.update(func(tx *bolt.Tx) error {
		o, err := openOutbox(tx)
		if err != nil {
			return err
		}
		if it, err = o.get(key); err != nil {
			return err
		}
		changed, err := change(o, key, &it)
		if err != nil || !changed {
			return err
		}
		if err := o.put(key, &it); err != nil {
			return err
		}
		return o.flush()
	})
	return it, err
}

// OutboxDue returns up to limit queued items of kind ("" = every kind)
// whose next attempt is at or before now, earliest first. Of ordered items
// only the oldest queued one of each group is handed out. It also returns
// when the next item not yet due is due (zero when none is queued), so a
// sender knows how long it may sleep.
func (s *Store) OutboxDue(ctx context.Context, kind string, now time.Time, limit int) ([]OutboxItem, time.Time, error) {
	var items []OutboxItem
	var next time.Time
	err := s.view(func(tx *bolt.Tx) error {
		o, err := openOutbox(tx)
		if err != nil {
			return err
		}
		c := o.due.Cursor()
		end := uint64(max(now.UnixNano(), 0))
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if len(k) != 16 {
				return fmt.Errorf("%w: outbox due key of %d bytes", ErrCorrupt, len(k))
			}
			if binary.BigEndian.Uint64(k) > end {
				if kind == "" || next.IsZero() {
					// next is the first later item (of any kind when
					// filtered: an over-early wake-up is harmless).
					next = time.Unix(0, int64(binary.BigEndian.Uint64(k))).UTC()
				}
				break
			}
			if len(items) >= limit {
				next = now
				break
			}
			it, err := o.get(k[8:])
			if err != nil {
				return err
			}
			if kind != "" && it.Kind != kind {
				continue
			}
			if it.Ordered {
				group := outboxGroup(it.Kind, it.Key)
				first, _ := o.queue.Cursor().Seek(group)
				if first == nil || !bytes.Equal(first, cat(group, k[8:])) {
					continue // an earlier item of its group is still queued
				}
			}
			items = append(items, it)
		}
		return nil
	})
	return items, next, err
}

// OutboxQuery selects outbox items for admins.
type OutboxQuery struct {
	Site  string // required, unless Kind and Key are set ("" = every site)
	Kind  string // "" = every kind
	Key   string // with Kind: one group (a webhook endpoint)
	Limit int    // 0 = 100
	// Before is an item id: only items older than it (paging).
	Before string
}

// OutboxList returns a site's items, newest first.
func (s *Store) OutboxList(ctx context.Context, q OutboxQuery) ([]OutboxItem, error) {
	if q.Limit <= 0 {
		q.Limit = 100
	}
	var items []OutboxItem
	err := s.view(func(tx *bolt.Tx) error {
		o, err := openOutbox(tx)
		if err != nil {
			return err
		}
		b, prefix := o.sites, outboxSiteKey(q.Site)
		if q.Key != "" && q.Kind != "" {
			b, prefix = o.groups, outboxGroup(q.Kind, q.Key)
		}
		c := b.Cursor()
		var k []byte
		if q.Before != "" {
			before, err := parseOutboxID(q.Before)
			if err != nil {
				return invalid("before", "not an outbox item id")
			}
			k, _ = c.Seek(cat(prefix, before))
		} else {
			k, _ = c.Seek(append(bytes.Clone(prefix), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff))
		}
		if k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
		for ; k != nil && len(items) < q.Limit; k, _ = c.Prev() {
			if !bytes.HasPrefix(k, prefix) || len(k) != len(prefix)+8 {
				break
			}
			it, err := o.get(k[len(prefix):])
			if err != nil {
				return err
			}
			if (q.Site != "" && it.Site != q.Site) || (q.Kind != "" && it.Kind != q.Kind) {
				continue
			}
			items = append(items, it)
		}
		return nil
	})
	return items, err
}

// OutboxItemByID returns one item; ErrNotFound for an unknown id.
func (s *Store) OutboxItemByID(ctx context.Context, id string) (OutboxItem, error) {
	key, err := parseOutboxID(id)
	if err != nil {
		return OutboxItem{}, err
	}
	var it OutboxItem
	err = s.view(func(tx *bolt.Tx) error {
		o, err := openOutbox(tx)
		if err != nil {
			return err
		}
		it, err = o.get(key)
		return err
	})
	return it, err
}

// OutboxCounts returns how many items of kind are in each state.
func (s *Store) OutboxCounts(ctx context.Context, kind string) (map[string]int, error) {
	out := map[string]int{OutboxQueued: 0, OutboxSent: 0, OutboxFailed: 0}
	err := s.view(func(tx *bolt.Tx) error {
		o, err := openOutbox(tx)
		if err != nil {
			return err
		}
		for k, v := range o.counts[kind] {
			out[k] = v
		}
		return nil
	})
	return out, err
}

// Enqueue stores items that belong to no record (a test event, an erasure
// notice) in their own transaction, and returns them as stored. Items
// dropped by their Cap are left out.
func (s *Store) Enqueue(ctx context.Context, items ...OutboxItem) ([]OutboxItem, error) {
	var out []OutboxItem
	err := s.update(func(tx *bolt.Tx) error {
		out = out[:0]
		o, err := openOutbox(tx)
		if err != nil {
			return err
		}
		now := s.now()
		for _, it := range items {
			it.Record, it.subject = "", nil
			ok, err := o.add(&it, now)
			if err != nil {
				return err
			}
			if ok {
				out = append(out, it)
			}
		}
		return o.flush()
	})
	if err == nil {
		s.notifyOutbox()
	}
	return out, err
}

// OutboxWake returns a channel that receives (without blocking the store)
// after each commit that queued outbox items, so a sender can start at once
// instead of polling.
func (s *Store) OutboxWake() <-chan struct{} { return s.outboxWake }

func (s *Store) notifyOutbox() {
	select {
	case s.outboxWake <- struct{}{}:
	default:
	}
}

// eraseOutbox blanks the payload of every item about the person and gives
// up the queued ones (last error "erased"), in the erasure's transaction.
func eraseOutbox(tx *bolt.Tx, subject []byte, now time.Time) error {
	o, err := openOutbox(tx)
	if err != nil {
		return err
	}
	c := o.subjects.Cursor()
	for k, _ := c.Seek(subject); k != nil && bytes.HasPrefix(k, subject); k, _ = c.Next() {
		key := bytes.Clone(k[len(subject):])
		it, err := o.get(key)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if it.State == OutboxQueued {
			if err := o.due.Delete(dueKey(it.NextAttemptAt, key)); err != nil {
				return err
			}
			if err := o.queue.Delete(cat(outboxGroup(it.Kind, it.Key), key)); err != nil {
				return err
			}
			it.State, it.LastError, it.DoneAt, it.NextAttemptAt = OutboxFailed, "erased", now.UTC(), time.Time{}
			o.count(it.Kind, OutboxQueued, -1)
			o.count(it.Kind, OutboxFailed, 1)
		}
		it.Payload = nil
		if err := o.put(key, &it); err != nil {
			return err
		}
	}
	return o.flush()
}

func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
