package store

import (
	"context"
	"io"
	"log/slog"
	"time"
)

// boltLedger is the bbolt file seen through the Ledger interface. The
// bbolt Store keeps its own method set (its many tests and the ledger's
// single-process tools use it directly); this view adds the context every
// Ledger method takes. bbolt transactions are short and not cancellable, so
// a method whose context is already done returns its error before
// starting; appends honour the context as Store.Append documents.
type boltLedger struct{ s *Store }

// Bolt is the bbolt file s behind the Ledger interface.
func Bolt(s *Store) Ledger { return boltLedger{s} }

// BoltStore returns the bbolt Store behind l, if l is one: for what only a
// file can do (compact, restore, a consistent file copy).
func BoltStore(l Ledger) (*Store, bool) {
	b, ok := l.(boltLedger)
	return b.s, ok
}

var _ Ledger = boltLedger{}

func (b boltLedger) Append(ctx context.Context, rec Record) (Record, error) {
	return b.s.Append(ctx, rec)
}
func (b boltLedger) AppendWith(ctx context.Context, rec Record, opts AppendOptions) (Record, []OutboxItem, error) {
	return b.s.AppendWith(ctx, rec, opts)
}
func (b boltLedger) Unsubscribe(ctx context.Context, token string, meta Record) (Record, error) {
	return b.s.Unsubscribe(ctx, token, meta)
}
func (b boltLedger) Confirm(ctx context.Context, token string, meta Record) (Record, error) {
	return b.s.Confirm(ctx, token, meta)
}
func (b boltLedger) WithdrawOnRequest(ctx context.Context, actor string, w Withdrawal, opts AppendOptions) ([]Record, error) {
	return b.s.WithdrawOnRequest(ctx, actor, w, opts)
}
func (b boltLedger) Rectify(ctx context.Context, actor string, r Rectification, opts AppendOptions) ([]Record, error) {
	return b.s.Rectify(ctx, actor, r, opts)
}
func (b boltLedger) CreateWebhook(ctx context.Context, ep WebhookEndpoint) (WebhookEndpoint, error) {
	return b.s.CreateWebhook(ctx, ep)
}
func (b boltLedger) Webhooks(ctx context.Context) ([]WebhookEndpoint, error) {
	return b.s.Webhooks(ctx)
}
func (b boltLedger) Webhook(ctx context.Context, id string) (WebhookEndpoint, error) {
	return b.s.Webhook(ctx, id)
}
func (b boltLedger) DeleteWebhook(ctx context.Context, id string) error {
	return b.s.DeleteWebhook(ctx, id)
}
func (b boltLedger) EraseWith(ctx context.Context, actor string, ref SubjectRef, opts EraseOptions) (ErasureReport, []OutboxItem, error) {
	return b.s.EraseWith(ctx, actor, ref, opts)
}
func (b boltLedger) UnsubscribeWith(ctx context.Context, token string, meta Record, opts AppendOptions) (Record, []OutboxItem, error) {
	return b.s.UnsubscribeWith(ctx, token, meta, opts)
}
func (b boltLedger) ConfirmWith(ctx context.Context, token string, meta Record, opts AppendOptions) (Record, []OutboxItem, error) {
	return b.s.ConfirmWith(ctx, token, meta, opts)
}
func (b boltLedger) OutboxRetry(ctx context.Context, id string) (OutboxItem, error) {
	return b.s.OutboxRetry(ctx, id)
}
func (b boltLedger) OutboxHead(ctx context.Context, kind, key string) (OutboxItem, bool, error) {
	return b.s.OutboxHead(ctx, kind, key)
}
func (b boltLedger) ConfirmToken(site, signupID string) string {
	return b.s.ConfirmToken(site, signupID)
}
func (b boltLedger) ParseConfirmToken(token string) (string, []byte, error) {
	return b.s.ParseConfirmToken(token)
}
func (b boltLedger) SubjectDigest(email string) []byte { return b.s.SubjectDigest(email) }

func (b boltLedger) Sites(ctx context.Context) ([]Site, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return b.s.Sites()
}
func (b boltLedger) Site(ctx context.Context, id string) (Site, error) {
	if err := ctx.Err(); err != nil {
		return Site{}, err
	}
	return b.s.Site(id)
}
func (b boltLedger) CreateSite(ctx context.Context, site Site) (Site, error) {
	if err := ctx.Err(); err != nil {
		return Site{}, err
	}
	return b.s.CreateSite(site)
}
func (b boltLedger) PutSite(ctx context.Context, site Site) (Site, error) {
	if err := ctx.Err(); err != nil {
		return Site{}, err
	}
	return b.s.PutSite(site)
}
func (b boltLedger) PutNotice(ctx context.Context, texts []byte) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	return b.s.PutNotice(texts)
}
func (b boltLedger) Notice(ctx context.Context, hash string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return b.s.Notice(hash)
}

// Records, Subjects and AuditLog stop between items once ctx is done.
func (b boltLedger) Records(ctx context.Context, site string, q Query, fn func(Record) error) error {
	return b.s.Records(site, q, func(r Record) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return fn(r)
	})
}
func (b boltLedger) Subjects(ctx context.Context, site string, q Query, fn func(SubjectState) error) error {
	return b.s.Subjects(site, q, func(st SubjectState) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return fn(st)
	})
}
func (b boltLedger) AuditLog(ctx context.Context, from, to time.Time, fn func(AuditEntry) error) error {
	return b.s.AuditLog(from, to, func(e AuditEntry) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return fn(e)
	})
}
func (b boltLedger) Subject(ctx context.Context, email string) ([]Record, SubjectState, error) {
	if err := ctx.Err(); err != nil {
		return nil, SubjectState{}, err
	}
	return b.s.Subject(email)
}
func (b boltLedger) Lookup(ctx context.Context, ref SubjectRef) ([]Record, SubjectState, error) {
	if err := ctx.Err(); err != nil {
		return nil, SubjectState{}, err
	}
	return b.s.Lookup(ref)
}
func (b boltLedger) Erase(ctx context.Context, actor string, ref SubjectRef) (ErasureReport, error) {
	if err := ctx.Err(); err != nil {
		return ErasureReport{}, err
	}
	return b.s.Erase(actor, ref)
}
func (b boltLedger) Suppressed(ctx context.Context, email string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	return b.s.Suppressed(email)
}
func (b boltLedger) SetDoubleOptIn(ctx context.Context, email, state, ip string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return b.s.SetDoubleOptIn(email, state, ip)
}

func (b boltLedger) Enqueue(ctx context.Context, items ...OutboxItem) ([]OutboxItem, error) {
	return b.s.Enqueue(ctx, items...)
}
func (b boltLedger) OutboxDue(ctx context.Context, kind string, now time.Time, limit int) ([]OutboxItem, time.Time, error) {
	return b.s.OutboxDue(ctx, kind, now, limit)
}
func (b boltLedger) OutboxAttempt(ctx context.Context, id string, a Attempt) (OutboxItem, error) {
	return b.s.OutboxAttempt(ctx, id, a)
}
func (b boltLedger) OutboxList(ctx context.Context, q OutboxQuery) ([]OutboxItem, error) {
	return b.s.OutboxList(ctx, q)
}
func (b boltLedger) OutboxItemByID(ctx context.Context, id string) (OutboxItem, error) {
	return b.s.OutboxItemByID(ctx, id)
}
func (b boltLedger) OutboxCounts(ctx context.Context, kind string) (map[string]int, error) {
	return b.s.OutboxCounts(ctx, kind)
}
func (b boltLedger) OutboxWake() <-chan struct{} { return b.s.OutboxWake() }

func (b boltLedger) Verify(ctx context.Context) (VerifyReport, error) {
	if err := ctx.Err(); err != nil {
		return VerifyReport{}, err
	}
	return b.s.Verify()
}
func (b boltLedger) Backup(ctx context.Context, w io.Writer) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return b.s.Backup(w)
}
func (b boltLedger) Counts(ctx context.Context) (map[string]int, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return b.s.Counts()
}
func (b boltLedger) Purge(ctx context.Context, now time.Time) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return b.s.Purge(now)
}
func (b boltLedger) RunRetention(ctx context.Context, every time.Duration, log *slog.Logger) {
	b.s.RunRetention(ctx, every, log)
}

func (b boltLedger) CreateToken(ctx context.Context, name string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	return b.s.CreateToken(name)
}
func (b boltLedger) CreateTokenRole(ctx context.Context, name string, role Role) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	return b.s.CreateTokenRole(name, role)
}
func (b boltLedger) CheckToken(ctx context.Context, token string) (string, bool) {
	if ctx.Err() != nil {
		return "", false
	}
	return b.s.CheckToken(token)
}
func (b boltLedger) TokenFor(ctx context.Context, token string) (Token, bool) {
	if ctx.Err() != nil {
		return Token{}, false
	}
	return b.s.TokenFor(token)
}
func (b boltLedger) Tokens(ctx context.Context) ([]Token, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return b.s.Tokens()
}
func (b boltLedger) RevokeToken(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return b.s.RevokeToken(name)
}
func (b boltLedger) TokenCount(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return b.s.TokenCount()
}

func (b boltLedger) CreateUser(ctx context.Context, email string, role Role, password string) (User, error) {
	if err := ctx.Err(); err != nil {
		return User{}, err
	}
	return b.s.CreateUser(email, role, password)
}
func (b boltLedger) Users(ctx context.Context) ([]User, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return b.s.Users()
}
func (b boltLedger) DeleteUser(ctx context.Context, email string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return b.s.DeleteUser(email)
}
func (b boltLedger) CheckPassword(ctx context.Context, email, password string) (User, bool) {
	if ctx.Err() != nil {
		return User{}, false
	}
	return b.s.CheckPassword(email, password)
}
func (b boltLedger) SetPassword(ctx context.Context, email, password string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return b.s.SetPassword(email, password)
}
func (b boltLedger) NewSession(ctx context.Context, email string, ttl time.Duration) (string, Session, error) {
	if err := ctx.Err(); err != nil {
		return "", Session{}, err
	}
	return b.s.NewSession(email, ttl)
}
func (b boltLedger) SessionFor(ctx context.Context, id string) (Session, bool) {
	if ctx.Err() != nil {
		return Session{}, false
	}
	return b.s.SessionFor(id)
}
func (b boltLedger) EndSession(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return b.s.EndSession(id)
}

func (b boltLedger) Audit(ctx context.Context, token, action, detail string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return b.s.Audit(token, action, detail)
}

func (b boltLedger) Receipt(rec Record) (string, error) { return b.s.Receipt(rec) }
func (b boltLedger) JWKS() ([]byte, error)              { return b.s.JWKS() }
func (b boltLedger) UnsubscribeToken(site, email string) string {
	return b.s.UnsubscribeToken(site, email)
}
func (b boltLedger) ParseUnsubscribeToken(token string) (string, string, error) {
	return b.s.ParseUnsubscribeToken(token)
}
func (b boltLedger) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return b.s.Ping()
}
func (b boltLedger) WriteStats() (uint64, uint64) { return b.s.WriteStats() }
func (b boltLedger) Describe() string             { return b.s.Path() }
func (b boltLedger) Close() error                 { return b.s.Close() }

// The admin changes that write their audit entry in their own transaction.

func (b boltLedger) CreateSiteBy(ctx context.Context, actor string, site Site) (Site, error) {
	if err := ctx.Err(); err != nil {
		return Site{}, err
	}
	if actor == "" {
		return b.s.CreateSite(site)
	}
	return b.s.CreateSiteBy(actor, site)
}
func (b boltLedger) PutSiteBy(ctx context.Context, actor string, site Site) (Site, error) {
	if err := ctx.Err(); err != nil {
		return Site{}, err
	}
	if actor == "" {
		return b.s.PutSite(site)
	}
	return b.s.PutSiteBy(actor, site)
}
func (b boltLedger) CreateTokenBy(ctx context.Context, actor, name string, role Role) (string, string, error) {
	if err := ctx.Err(); err != nil {
		return "", "", err
	}
	return b.s.CreateTokenBy(actor, name, role)
}
func (b boltLedger) RevokeTokenBy(ctx context.Context, actor, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return b.s.RevokeTokenBy(actor, name)
}
func (b boltLedger) CreateUserBy(ctx context.Context, actor, email string, role Role, password string) (User, error) {
	if err := ctx.Err(); err != nil {
		return User{}, err
	}
	return b.s.CreateUserBy(actor, email, role, password)
}
func (b boltLedger) DeleteUserBy(ctx context.Context, actor, email string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return b.s.DeleteUserBy(actor, email)
}
