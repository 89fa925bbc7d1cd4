// Package postgres is the consent ledger in a PostgreSQL database (13 or
// later) that any number of Assent replicas share. It implements
// store.Ledger and passes the same conformance suite (store/storetest) as
// the bbolt file; the proof — canonical encoding, hashes, stored record
// bytes, receipts — is store's code, so the two backends agree byte for
// byte. It is not a general PostgreSQL helper and knows nothing of HTTP.
//
// Tables are in migrations/*.sql, applied in order at start-up under an
// advisory lock, so replicas starting together do not race; the version
// applied is kept in schema_migrations. The first start creates the
// ledger's keys (INSERT … ON CONFLICT DO NOTHING, then read back), so every
// replica signs with the same key.
//
// Appends go through one writer goroutine per process that group-commits
// what has queued: one transaction locks the chain head rows of the sites in
// the batch (FOR UPDATE, in site order so replicas never deadlock), gives
// each record a time after its head's (max of the database clock and head
// + 1 ns: one total order per site whatever the replicas' clocks), inserts
// the records and moves the heads. Callers are answered after COMMIT, which
// PostgreSQL makes durable (synchronous_commit on).
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/assent/assent/store"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Advisory lock keys (pg_advisory_lock takes a bigint): one for
// migrations, one for retention purges.
const (
	lockMigrate = 0x617373656e74_01 // "assent" 1
	lockPurge   = 0x617373656e74_02
)

// Options tune Open.
type Options struct {
	// MaxConns caps the pool; 0 means 8.
	MaxConns int32
	// Now is the clock of everything but record times (sites, tokens, audit
	// entries, suppression), for tests; nil means time.Now. Record times
	// come from the database clock and the chain head.
	Now func() time.Time
	// maxBatch caps the records in one group commit; 0 means 1024.
	maxBatch int
}

// DB is an open PostgreSQL ledger. Its methods are safe for concurrent use.
type DB struct {
	*store.Keyring
	pool *pgxpool.Pool
	url  string
	now  func() time.Time
	opts Options

	notices sync.Map // "sha256:…" -> struct{}: notices known to be stored

	mu      sync.RWMutex // guards closed and sending on queue
	closed  bool
	queue   chan *appendReq
	writerW sync.WaitGroup

	batches, batched atomic.Uint64
	outboxWake       chan struct{}
}

var _ store.Ledger = (*DB)(nil)

// IsURL tells whether a --database value names a PostgreSQL database.
func IsURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// Open connects to the database at url (postgres://…), applies the
// migrations it lacks, creates the keys on the first start, and starts the
// writer.
func Open(ctx context.Context, url string, opts Options) (*DB, error) {
	if opts.MaxConns <= 0 {
		opts.MaxConns = 8
	}
	if opts.maxBatch <= 0 {
		opts.maxBatch = 1024
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	pool, err := newPool(ctx, url, opts.MaxConns)
	if err != nil {
		return nil, err
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	keys, err := ensureKeys(ctx, pool)
	if err != nil {
		pool.Close()
		return nil, err
	}
	kr, err := store.NewKeyring(keys, opts.Now)
	if err != nil {
		pool.Close()
		return nil, err
	}
	db := &DB{Keyring: kr, pool: pool, url: url, now: opts.Now, opts: opts,
		queue: make(chan *appendReq, 4096), outboxWake: make(chan struct{}, 1)}
	db.writerW.Add(1)
	go db.writer()
	return db, nil
}

func newPool(ctx context.Context, url string, maxConns int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("database URL: %s", redactErr(err, url))
	}
	cfg.MaxConns = maxConns
	cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("database %s: %w", Redact(url), err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("database %s: %w (%s)", Redact(url), store.ErrUnavailable, redactErr(err, url))
	}
	return pool, nil
}

// Redact is the URL without its password, for logs and errors.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "postgres://…"
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

func redactErr(err error, raw string) string {
	msg := err.Error()
	if u, perr := url.Parse(raw); perr == nil {
		if p, ok := u.User.Password(); ok && p != "" {
			msg = strings.ReplaceAll(msg, p, "xxxxx")
		}
	}
	return msg
}

// migrations are the embedded files in name order; version n is the n-th.
func migrations() ([]string, []string, error) {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return nil, nil, err
	}
	sort.Strings(names)
	var bodies []string
	for _, n := range names {
		b, err := migrationFiles.ReadFile(n)
		if err != nil {
			return nil, nil, err
		}
		bodies = append(bodies, string(b))
	}
	return names, bodies, nil
}

// SchemaVersion is the schema this code reads and writes.
func SchemaVersion() int {
	names, _, _ := migrations()
	return len(names)
}

// Migrate applies the migrations the database at url lacks and returns the
// versions before and after; `assent migrate` calls it, and so does Open.
func Migrate(ctx context.Context, url string) (from, to int, err error) {
	pool, err := newPool(ctx, url, 2)
	if err != nil {
		return 0, 0, err
	}
	defer pool.Close()
	from, err = schemaVersion(ctx, pool)
	if err != nil && !errors.Is(err, errNoSchema) {
		return 0, 0, err
	}
	if err := migrate(ctx, pool); err != nil {
		return from, 0, err
	}
	to, err = schemaVersion(ctx, pool)
	return from, to, err
}

var errNoSchema = errors.New("no schema yet")

func schemaVersion(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) (int, error) {
	var v int
	err := q.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&v)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42P01" { // undefined_table
		return 0, errNoSchema
	}
	return v, wrap(err)
}

// migrate applies what is missing under a session advisory lock held on
// one connection, each migration in its own transaction with its version.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	names, bodies, err := migrations()
	if err != nil {
		return err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return wrap(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, int64(lockMigrate)); err != nil {
		return wrap(err)
	}
	defer conn.Exec(context.Background(), `SELECT pg_advisory_unlock($1)`, int64(lockMigrate))
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return wrap(err)
	}
	have, err := schemaVersion(ctx, conn)
	if err != nil {
		return err
	}
	if have > len(names) {
		return fmt.Errorf("database has schema version %d; this Assent reads up to %d: upgrade Assent (%w)", have, len(names), store.ErrNewerSchema)
	}
	for v := have; v < len(names); v++ {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, bodies[v]); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, v+1, strings.TrimPrefix(names[v], "migrations/"))
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate database to schema %d (%s): %w", v+1, names[v], err)
		}
	}
	return nil
}

var keyNames = []string{"digest_key", "signing_key", "unsubscribe_key"}

// ensureKeys creates the keys if no replica did, then reads the ones stored:
// replicas starting together insert at most one set.
func ensureKeys(ctx context.Context, pool *pgxpool.Pool) (store.Keys, error) {
	k, err := store.GenerateKeys()
	if err != nil {
		return store.Keys{}, err
	}
	if _, err := pool.Exec(ctx, `INSERT INTO meta (key, value)
		SELECT * FROM unnest($1::text[], $2::bytea[])
		WHERE NOT EXISTS (SELECT 1 FROM meta WHERE key = ANY($1::text[]))
		ON CONFLICT DO NOTHING`, keyNames, [][]byte{k.Digest, k.Signing, k.Unsubscribe}); err != nil {
		return store.Keys{}, wrap(err)
	}
	return readKeys(ctx, pool)
}

func readKeys(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}) (store.Keys, error) {
	rows, err := q.Query(ctx, `SELECT key, value FROM meta WHERE key = ANY($1)`, keyNames)
	if err != nil {
		return store.Keys{}, wrap(err)
	}
	got := map[string][]byte{}
	var key string
	var value []byte
	_, err = pgx.ForEachRow(rows, []any{&key, &value}, func() error { got[key] = value; return nil })
	if err != nil {
		return store.Keys{}, wrap(err)
	}
	return store.Keys{Digest: got["digest_key"], Signing: got["signing_key"], Unsubscribe: got["unsubscribe_key"]}, nil
}

// wrap marks failures to reach the database as store.ErrUnavailable, so
// the server answers 503; errors of the statements themselves stay as they
// are.
func wrap(err error) error {
	if err == nil {
		return nil
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"), // connection exception
			strings.HasPrefix(pe.Code, "53"),                           // insufficient resources
			pe.Code == "57P01", pe.Code == "57P02", pe.Code == "57P03", // shutdown, cannot connect now
			pe.Code == "40001", pe.Code == "40P01": // serialization failure, deadlock: try again
			return fmt.Errorf("%w: %v", store.ErrUnavailable, err)
		}
		return err
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		pgconn.SafeToRetry(err) || pgconn.Timeout(err) || errors.Is(err, context.DeadlineExceeded) ||
		strings.Contains(err.Error(), "failed to connect") || strings.Contains(err.Error(), "conn closed") {
		return fmt.Errorf("%w: %v", store.ErrUnavailable, err)
	}
	return err
}

// Describe names the database without its password.
func (db *DB) Describe() string { return Redact(db.url) }

// Ping asks the database once, for health checks.
func (db *DB) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return wrap(db.pool.Ping(ctx))
}

// Close waits for queued records to be committed, then closes the pool.
func (db *DB) Close() error {
	db.mu.Lock()
	if db.closed {
		db.mu.Unlock()
		return nil
	}
	db.closed = true
	close(db.queue)
	db.mu.Unlock()
	db.writerW.Wait()
	db.pool.Close()
	return nil
}

// WriteStats are the group commits made and the records they carried.
func (db *DB) WriteStats() (commits, records uint64) { return db.batches.Load(), db.batched.Load() }

// Backup is PostgreSQL's own tools' job (pg_dump, pg_basebackup).
func (db *DB) Backup(context.Context, io.Writer) (int64, error) {
	return 0, fmt.Errorf("backup of a PostgreSQL ledger: use pg_dump or pg_basebackup: %w", store.ErrNotSupported)
}

// Counts returns each site's chain length, tombstones included.
func (db *DB) Counts(ctx context.Context) (map[string]int, error) {
	rows, err := db.pool.Query(ctx, `SELECT site, count FROM chains`)
	if err != nil {
		return nil, wrap(err)
	}
	counts := map[string]int{}
	var site string
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&site, &n}, func() error { counts[site] = int(n); return nil })
	return counts, wrap(err)
}

func itoa(n int) string { return strconv.Itoa(n) }
