// Package store is Assent's consent ledger: one bbolt file holding the sites,
// the notices shown, the hash-chained consent records, the subject index, the
// suppression list, admin tokens and the audit log. It knows nothing of HTTP;
// the server and the CLI call it.
//
// Bucket layout (schema version 5; version 1 had no outbox, 2 no visitors/
// index, 3 no users/ and sessions/, 4 no webhooks/):
//
//	meta/
//	  schema_version      uint64 big-endian (see schemaVersion, migrations)
//	  digest_key          32 random bytes: HMAC-SHA256 key of the personal-field
//	                      digests, the subject index and the suppression list
//	  signing_key         32-byte Ed25519 seed: signs receipts (JWS, EdDSA)
//	  unsubscribe_key     32 random bytes: HMAC key of unsubscribe tokens
//	sites/
//	  <site id>           Site as JSON
//	notices/
//	  <sha256, 32 bytes>  the exact texts shown, stored once
//	chains/
//	  <site id>           chain head: count uint64 | last id 16 bytes | hash 32 bytes
//	records/              append-only, FillPercent 0.95
//	  <site id>/          one chain per site
//	    <id, 16 bytes>    record, binary (codec.go); the id starts with its time
//	subjects/
//	  <email digest 32 bytes><id 16 bytes>   site id: index of a person's records
//	visitors/             (schema 3)
//	  <visitor_id digest 32 bytes><id 16 bytes>   site id: index of a visitor id's records
//	optin/
//	  <email digest 32 bytes>   double-opt-in state as JSON: the latest, and per site
//	                            {"sites":{id:{state,signup_id,pending_at,pending_ip,
//	                            confirm_id,confirmed_at,confirmed_ip}}} (optin.go)
//	suppression/
//	  <email or visitor_id digest 32 bytes>   {"at":…,"reason":…} for erased
//	                      addresses and visitor ids: every later record naming
//	                      one is refused (a signup) or stored erased (erase.go)
//	tokens/
//	  <name>              {"hash":sha256 of the token,"role":…,"created_at":…}
//	                      (no role: admin, as before roles existed)
//	users/                console users (users.go), since schema 4
//	  <normalised email>  {"role":…,"hash":argon2id PHC string,"created_at":…}
//	sessions/             console sign-ins (users.go), since schema 4
//	  <sha256 of the session id, 32 bytes>   {"email":…,"csrf":…,"expires_at":…}
//	audit/                append-only, FillPercent 0.95
//	  <unix ns 8 bytes><sequence 8 bytes>   AuditEntry as JSON
//	outbox/               what must be sent: mails, webhook deliveries (outbox.go)
//	  items/     <seq 8>                    OutboxItem as JSON; seq = creation order
//	  due/       <next attempt ns 8><seq 8> queued items, by due time
//	  queue/     <group><seq 8>             queued ordered items of each group
//	  groups/    <group><seq 8>             every item of each group (caps, lists)
//	  sites/     <len 1><site id><seq 8>    every item of each site
//	  subjects/  <email digest 32><seq 8>   items about a person (erasure)
//	  counts                                {"mail":{"queued":n,"sent":n,"failed":n},…}
//	                                        where <group> = <len 1><kind><len 1><key>
//	webhooks/             webhook endpoints (webhook.go), since schema 5
//	  <id "wh_…">         WebhookEndpoint as JSON, with its signing secret
//
// Records and their proof (codec.go): a record's id is 26 Crockford base32
// characters that read as a ULID and carry recorded_at to the nanosecond, so
// keys sort by time. Each site has one hash chain: hash = SHA-256 of the
// record's canonical encoding (RFC 8785 JSON, including prev_hash), in which
// the personal fields — email, name, visitor_id, ip, user_agent — appear only
// as HMAC-SHA256 digests under the ledger's digest key. Erasure blanks those
// fields and keeps the digests, so every chain still verifies; page_url is
// proof of where consent was given and enters in clear. Retention turns old
// records into tombstones that keep id, time, prev_hash and hash. The key is
// in the same file, so the chain shows edits made without Assent's code; the
// receipts visitors keep (signed hashes) anchor it beyond that.
//
// Record writes go through one writer goroutine that group-commits whatever
// has queued while the previous commit ran: one fsync'd bbolt transaction per
// batch, and every caller is answered only after that commit (see Append).
// Other writes (sites, erasure, tokens, audit) are rare and use their own
// transactions.
//
// The outbox is the ledger's durable queue of messages to the outside world
// (kind "mail": confirmation mails; kind "webhook": deliveries). AppendWith
// writes a record's items in the record's own group-commit transaction, so
// after a crash an item exists if and only if its record does, and nothing
// acknowledged is left unsent. Each item has a kind, a site, a group key (a
// recipient digest, an endpoint id), a JSON payload, a state (queued, sent,
// failed), its attempts, last error and next attempt time. Senders take due
// items with OutboxDue — for ordered items only the oldest queued one of
// each group, so deliveries to one endpoint keep record order — and report
// each try with OutboxAttempt (sent, retry at, or failed). OutboxList serves
// admins, OutboxCounts metrics. Erasure blanks the payloads of a person's
// items and gives up the queued ones.
package store

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Bucket names.
var (
	bucketMeta        = []byte("meta")
	bucketSites       = []byte("sites")
	bucketNotices     = []byte("notices")
	bucketChains      = []byte("chains")
	bucketRecords     = []byte("records")
	bucketSubjects    = []byte("subjects")
	bucketVisitors    = []byte("visitors")
	bucketOptIn       = []byte("optin")
	bucketSuppression = []byte("suppression")
	bucketTokens      = []byte("tokens")
	bucketAudit       = []byte("audit")
	bucketOutbox      = []byte("outbox")
	bucketUsers       = []byte("users")
	bucketSessions    = []byte("sessions")

	// schema1Buckets are the top-level buckets of schema version 1.
	schema1Buckets = [][]byte{bucketMeta, bucketSites, bucketNotices, bucketChains, bucketRecords,
		bucketSubjects, bucketOptIn, bucketSuppression, bucketTokens, bucketAudit}
	allBuckets = append(append([][]byte{}, schema1Buckets...), bucketOutbox, bucketVisitors, bucketUsers, bucketSessions, bucketWebhooks)
)

// Keys in the meta bucket.
var (
	keySchemaVersion  = []byte("schema_version")
	keyDigestKey      = []byte("digest_key")
	keySigningKey     = []byte("signing_key")
	keyUnsubscribeKey = []byte("unsubscribe_key")
)

// appendFill is the FillPercent of append-only buckets: bbolt's default (0.5)
// leaves pages filled by sequential keys about half empty.
const appendFill = 0.95

// schemaVersion is the layout this code reads and writes.
const schemaVersion = 5

// migrations[v] brings a ledger at schema version v to v+1. A fresh file is
// version 0. Each runs in the one transaction that also records the new
// version, so a failed migration leaves the file as it was.
var migrations = []func(tx *bolt.Tx) error{
	0: migrateCreate,
	1: migrateOutbox,
	2: migrateVisitors,
	3: migrateUsers,
	4: migrateWebhooks,
}

// migrateUsers makes the console's users/ and sessions/ buckets (schema 4).
func migrateUsers(tx *bolt.Tx) error {
	for _, name := range [][]byte{bucketUsers, bucketSessions} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	return nil
}

// migrateVisitors builds the visitors/ index (schema 3) from the records'
// stored visitor_id digests, which erasure keeps, so erased records are
// indexed too. Tombstones carry no digest and stay out.
func migrateVisitors(tx *bolt.Tx) error {
	visitors, err := tx.CreateBucketIfNotExists(bucketVisitors)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketRecords).ForEachBucket(func(site []byte) error {
		return tx.Bucket(bucketRecords).Bucket(site).ForEach(func(k, v []byte) error {
			r, err := decodeRecord(string(site), k, v)
			if err != nil {
				return fmt.Errorf("%w: record %s of site %s: %v", ErrCorrupt, formatID(k), site, err)
			}
			if r.digests.visitorID == nil {
				return nil
			}
			return visitors.Put(subjectKey(r.digests.visitorID, k), bytes.Clone(site))
		})
	})
}

// migrateCreate makes the buckets and the keys of a new ledger.
func migrateCreate(tx *bolt.Tx) error {
	for _, name := range schema1Buckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	meta := tx.Bucket(bucketMeta)
	for _, k := range [][]byte{keyDigestKey, keySigningKey, keyUnsubscribeKey} {
		if meta.Get(k) != nil {
			continue
		}
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return err
		}
		if err := meta.Put(k, key); err != nil {
			return err
		}
	}
	return nil
}

// Errors callers test with errors.Is.
var (
	ErrNotFound    = errors.New("not found")
	ErrSiteExists  = errors.New("site already exists")
	ErrSuppressed  = errors.New("address is on the suppression list (erased)")
	ErrLocked      = errors.New("ledger is in use by another process")
	ErrNewerSchema = errors.New("ledger was written by a newer version of Assent")
	ErrCorrupt     = errors.New("ledger file is damaged or not an Assent ledger")
	ErrBadToken    = errors.New("invalid token")
	ErrExists      = errors.New("already exists") // a token name in use
	ErrClosed      = errors.New("ledger is closed")
)

// lockedError names the path and what to do; errors.Is(err, ErrLocked).
type lockedError struct{ path string }

func (e *lockedError) Error() string {
	return fmt.Sprintf("ledger %s is in use by another process (a running server?); use --server URL", e.path)
}
func (e *lockedError) Unwrap() error { return ErrLocked }

// Options tune Open.
type Options struct {
	// Timeout is how long to wait for the file lock; 0 means 1s. A file held
	// by another process gives ErrLocked after it, never a hang.
	Timeout time.Duration
	// ReadOnly opens with a shared lock and changes nothing, not even a
	// migration.
	ReadOnly bool
	// DiscardCommits, for benchmarks only, does all of a batch's work and
	// rolls the transaction back instead of committing it.
	DiscardCommits bool
	// Now is the clock, for tests; nil means time.Now.
	Now func() time.Time

	// maxBatch caps the records in one group commit; 0 means defaultMaxBatch.
	// The benchmarks set 1 to measure one fsync'd transaction per record.
	maxBatch int
}

// defaultMaxBatch bounds one transaction's size; at ~300 bytes a record it
// is ~1 MiB of leaf pages.
const defaultMaxBatch = 4096

// Store is an open ledger. Its methods are safe for concurrent use.
type Store struct {
	db   *bolt.DB
	path string
	opts Options
	now  func() time.Time

	*Keyring // digests of personal fields, receipts, unsubscribe tokens

	notices sync.Map // "sha256:…" -> struct{}: notices known to be stored

	journalMu sync.Mutex // serialises appends to the erasure journal

	mu      sync.RWMutex // guards closed and sending on queue
	closed  bool
	queue   chan *appendReq
	writerW sync.WaitGroup
	lastNs  int64 // writer goroutine only: time of the last record id

	batches, batched atomic.Uint64 // group commits made, records in them

	outboxWake chan struct{} // see OutboxWake

	fail failState // fail-stop after a failed write or sync (failstop.go)
}

// Open opens the ledger at path, creating it (mode 0600) and its buckets if
// needed and migrating an older schema. A file held by another process gives
// an error wrapping ErrLocked; one written by a newer Assent ErrNewerSchema;
// a damaged or foreign file ErrCorrupt.
func Open(path string, opts Options) (*Store, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = time.Second
	}
	if opts.maxBatch <= 0 {
		opts.maxBatch = defaultMaxBatch
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	if opts.ReadOnly {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("open ledger: %w", err)
		}
	} else if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("open ledger: %w", err)
		}
	}
	if fi, err := os.Stat(path); err == nil && fi.Size() == 0 {
		// bbolt would make a new ledger in it (new keys, an empty chain):
		// an emptied file is damage, not a fresh start.
		return nil, fmt.Errorf("ledger %s: %w (the file is empty, 0 bytes: restore a backup, or move it away to start a new ledger)", path, ErrCorrupt)
	}
	db, err := openBolt(path, opts)
	if err != nil {
		return nil, err
	}
	s := &Store{db: db, path: path, opts: opts, now: now, outboxWake: make(chan struct{}, 1)}
	if err := guard(s.prepare); err != nil {
		db.Close()
		return nil, err
	}
	if !opts.ReadOnly {
		s.queue = make(chan *appendReq, 1024)
		s.writerW.Add(1)
		go s.writer()
	}
	return s, nil
}

func openBolt(path string, opts Options) (db *bolt.DB, err error) {
	// bbolt can panic while opening a damaged file, after it took the file
	// lock: keep the file to close it then, or the lock would outlive the
	// failed Open.
	var file *os.File
	openFile := func(name string, flag int, perm os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag, perm)
		file = f
		return f, err
	}
	err = guard(func() error {
		var e error
		db, e = bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.Timeout, ReadOnly: opts.ReadOnly, OpenFile: openFile})
		return e
	})
	if err != nil && db == nil && file != nil && errors.Is(err, ErrCorrupt) {
		// The mapping bbolt made keeps the open file alive: unlock it
		// explicitly, then close it.
		_ = syscall.Flock(int(file.Fd()), syscall.LOCK_UN)
		file.Close()
	}
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, berrors.ErrTimeout):
		return nil, &lockedError{path: path}
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch),
		errors.Is(err, berrors.ErrChecksum), errors.Is(err, ErrCorrupt):
		return nil, fmt.Errorf("ledger %s: %w (%v)", path, ErrCorrupt, err)
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, fs.ErrPermission):
		return nil, fmt.Errorf("open ledger: %w", err)
	default:
		// bbolt reports a short or damaged file in many words ("file size
		// too small", mmap errors); all of them mean the same to a user.
		return nil, fmt.Errorf("ledger %s: %w (%v)", path, ErrCorrupt, err)
	}
}

// guard runs fn, turning a panic or a memory fault while reading a damaged
// file into ErrCorrupt.
func guard(fn func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrCorrupt, r)
		}
	}()
	return fn()
}

// prepare checks the file, migrates it and loads the keys.
func (s *Store) prepare() error {
	fi, err := os.Stat(s.path)
	if err != nil {
		return err
	}
	check := func(tx *bolt.Tx) (uint64, error) {
		if fi.Size() < tx.Size() {
			return 0, fmt.Errorf("ledger %s: %w (file is %d bytes, its pages need %d: truncated?)", s.path, ErrCorrupt, fi.Size(), tx.Size())
		}
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			empty := true
			tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
			if !empty {
				return 0, fmt.Errorf("ledger %s: %w (a bbolt file without Assent's buckets)", s.path, ErrCorrupt)
			}
			return 0, nil
		}
		v := meta.Get(keySchemaVersion)
		if len(v) != 8 {
			return 0, fmt.Errorf("ledger %s: %w (no schema version)", s.path, ErrCorrupt)
		}
		version := binary.BigEndian.Uint64(v)
		if version > schemaVersion {
			return 0, fmt.Errorf("ledger %s has schema version %d; this Assent reads up to %d: upgrade Assent (%w)", s.path, version, schemaVersion, ErrNewerSchema)
		}
		return version, nil
	}
	if s.opts.ReadOnly {
		err = s.view(func(tx *bolt.Tx) error {
			version, err := check(tx)
			if err != nil {
				return err
			}
			if version < schemaVersion {
				return fmt.Errorf("ledger %s has schema version %d and needs migrating to %d: open it once read-write", s.path, version, schemaVersion)
			}
			return s.loadKeys(tx)
		})
	} else {
		err = s.update(func(tx *bolt.Tx) error {
			version, err := check(tx)
			if err != nil {
				return err
			}
			for v := version; v < schemaVersion; v++ {
				if err := migrations[v](tx); err != nil {
					return fmt.Errorf("migrate ledger from schema %d: %w", v, err)
				}
			}
			if version < schemaVersion {
				if err := tx.Bucket(bucketMeta).Put(keySchemaVersion, u64(schemaVersion)); err != nil {
					return err
				}
			}
			return s.loadKeys(tx)
		})
	}
	if err != nil {
		return err
	}
	return s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketChains).ForEach(func(k, v []byte) error {
			h, err := decodeHead(v)
			if err != nil {
				return fmt.Errorf("ledger %s: %w (chain head of %q: %v)", s.path, ErrCorrupt, k, err)
			}
			if h.count > 0 {
				if ns := idTime(h.last); ns > s.lastNs {
					s.lastNs = ns
				}
			}
			return nil
		})
	})
}

func (s *Store) loadKeys(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	digestKey, unsubscribeKey, seed := meta.Get(keyDigestKey), meta.Get(keyUnsubscribeKey), meta.Get(keySigningKey)
	if len(digestKey) != 32 || len(unsubscribeKey) != 32 || len(seed) != ed25519.SeedSize {
		return fmt.Errorf("ledger %s: %w (missing keys in meta)", s.path, ErrCorrupt)
	}
	for _, name := range allBuckets {
		if tx.Bucket(name) == nil {
			return fmt.Errorf("ledger %s: %w (missing bucket %q)", s.path, ErrCorrupt, name)
		}
	}
	var err error
	s.Keyring, err = NewKeyring(Keys{Digest: digestKey, Signing: seed, Unsubscribe: unsubscribeKey}, s.now)
	return err
}

// Close waits for the queued records to be committed, then closes the file.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	if s.queue != nil {
		close(s.queue)
	}
	s.mu.Unlock()
	s.writerW.Wait()
	return s.db.Close()
}

// Ping reads the ledger once, for health checks; after a failed write or
// sync it returns the *FailedError.
func (s *Store) Ping() error {
	if err := s.Failed(); err != nil {
		return err
	}
	return s.view(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketMeta) == nil {
			return ErrCorrupt
		}
		return nil
	})
}

// Path is the ledger file's path.
func (s *Store) Path() string { return s.path }

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
