package store

import (
	"context"
	"io"
	"log/slog"
	"time"
)

// Ledger is the consent ledger as the server and the CLI see it, whatever
// stores it: the bbolt file of this package (the default) or a PostgreSQL
// database that several Assent replicas share (store/postgres). Every
// backend passes the same conformance suite (store/storetest), gives the
// same record JSON, hashes and receipts, and the same errors (ErrNotFound,
// ErrSiteExists, ErrSuppressed, ErrExists, ErrBadToken, *ValidationError).
//
// Methods that touch storage take a context; the few that only use the
// ledger's keys (receipts, JWKS, unsubscribe tokens) do not, since they
// never wait.
//
// Implementations must keep one total order per site: two appends to one
// site, from any number of processes, never fork its chain; and Append
// answers only after the record is durable.
type Ledger interface {
	// Append stores a record durably and returns it as stored (see
	// Store.Append for what it normalises and decides).
	Append(ctx context.Context, rec Record) (Record, error)
	// Unsubscribe appends the withdraw record an unsubscribe token asks for.
	Unsubscribe(ctx context.Context, token string, meta Record) (Record, error)
	// Confirm appends a double-opt-in confirmation (see Store.Confirm).
	Confirm(ctx context.Context, token string, meta Record) (Record, error)

	Sites(ctx context.Context) ([]Site, error)
	Site(ctx context.Context, id string) (Site, error)
	CreateSite(ctx context.Context, site Site) (Site, error)
	PutSite(ctx context.Context, site Site) (Site, error)
	// CreateSiteBy and PutSiteBy are CreateSite and PutSite writing the
	// "site_create" / "site_update" audit entry of actor in the same
	// transaction: the change and its entry are stored together or not at
	// all. The other ...By methods do the same for tokens and console
	// users; actor is the audit name of who made the change, never "".
	CreateSiteBy(ctx context.Context, actor string, site Site) (Site, error)
	PutSiteBy(ctx context.Context, actor string, site Site) (Site, error)

	PutNotice(ctx context.Context, texts []byte) (string, error)
	Notice(ctx context.Context, hash string) ([]byte, error)

	Records(ctx context.Context, site string, q Query, fn func(Record) error) error
	Subjects(ctx context.Context, site string, q Query, fn func(SubjectState) error) error
	Subject(ctx context.Context, email string) ([]Record, SubjectState, error)
	// Lookup finds a person by address, visitor id or record id: their
	// records and those of every visitor id used with their address.
	Lookup(ctx context.Context, ref SubjectRef) ([]Record, SubjectState, error)
	// Erase erases the person Lookup finds, suppresses their address and
	// visitor ids, and writes the audit entry (actor, counts only) in the
	// same transaction. The writer (Append, Unsubscribe) must check the
	// suppression list inside its own transaction: a signup of a suppressed
	// address is refused, any other record naming a suppressed address or
	// visitor id is stored already erased.
	Erase(ctx context.Context, actor string, ref SubjectRef) (ErasureReport, error)
	Suppressed(ctx context.Context, email string) (bool, error)
	SetDoubleOptIn(ctx context.Context, email, state, ip string) error

	// Outbox: mails and webhook deliveries queued with their records.
	Outbox
	// Rights: withdrawals and rectifications an admin records on request.
	Rights
	// Webhooks: endpoints, and events queued in an erasure's, an
	// unsubscribe's or a confirmation's own transaction.
	Webhooks
	// Rights (rights.go), withdrawal and rectification on request, joins
	// here once store/postgres implements it: its subject index must also
	// file a rectify record under NewEmailDigest, and its signups export
	// must follow rectify records as the bbolt one does.

	Verify(ctx context.Context) (VerifyReport, error)
	// Backup writes a consistent copy of the ledger, or ErrNotSupported
	// where the database's own tools do that.
	Backup(ctx context.Context, w io.Writer) (int64, error)
	Counts(ctx context.Context) (map[string]int, error)
	Purge(ctx context.Context, now time.Time) (int, error)
	RunRetention(ctx context.Context, every time.Duration, log *slog.Logger)

	CreateToken(ctx context.Context, name string) (string, error)
	CreateTokenRole(ctx context.Context, name string, role Role) (string, error)
	CheckToken(ctx context.Context, token string) (name string, ok bool)
	TokenFor(ctx context.Context, token string) (Token, bool)
	Tokens(ctx context.Context) ([]Token, error)
	RevokeToken(ctx context.Context, name string) error
	// CreateTokenBy returns the name the token got (an empty name becomes
	// "admin-<n>", and its audit entry names that) and the token.
	CreateTokenBy(ctx context.Context, actor, name string, role Role) (string, string, error)
	RevokeTokenBy(ctx context.Context, actor, name string) error
	TokenCount(ctx context.Context) (int, error)

	CreateUser(ctx context.Context, email string, role Role, password string) (User, error)
	Users(ctx context.Context) ([]User, error)
	DeleteUser(ctx context.Context, email string) error
	CreateUserBy(ctx context.Context, actor, email string, role Role, password string) (User, error)
	DeleteUserBy(ctx context.Context, actor, email string) error
	CheckPassword(ctx context.Context, email, password string) (User, bool)
	SetPassword(ctx context.Context, email, password string) error
	NewSession(ctx context.Context, email string, ttl time.Duration) (string, Session, error)
	SessionFor(ctx context.Context, id string) (Session, bool)
	EndSession(ctx context.Context, id string) error

	Audit(ctx context.Context, token, action, detail string) error
	AuditLog(ctx context.Context, from, to time.Time, fn func(AuditEntry) error) error

	Receipt(rec Record) (string, error)
	JWKS() ([]byte, error)
	UnsubscribeToken(site, email string) string
	ParseUnsubscribeToken(token string) (site, subject string, err error)
	ConfirmToken(site, signupID string) string
	ParseConfirmToken(token string) (site string, signupID []byte, err error)
	SubjectDigest(email string) []byte

	// Ping reads the ledger once, for health checks.
	Ping(ctx context.Context) error
	// WriteStats are the group commits made and the records they carried.
	WriteStats() (commits, records uint64)
	// Describe names the ledger for logs, without secrets: a file path or
	// a database URL without its password.
	Describe() string
	Close() error
}
