package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/assent/assent/store"
)

// lockAdmins serialises changes that could remove the last admin, across
// replicas (pg_advisory_xact_lock).
const lockAdmins = 0x617373656e74_03

// keepAnAdmin refuses, inside tx, to remove an admin if it is the last
// admin token or user.
func keepAnAdmin(ctx context.Context, tx pgx.Tx, role string) error {
	if store.Role(role) != store.RoleAdmin {
		return nil
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(lockAdmins)); err != nil {
		return err
	}
	var n int
	if err := tx.QueryRow(ctx, `SELECT (SELECT count(*) FROM tokens WHERE role = 'admin') + (SELECT count(*) FROM users WHERE role = 'admin')`).Scan(&n); err != nil {
		return err
	}
	if n <= 1 {
		return store.ErrLastAdmin
	}
	return nil
}

// CreateUser adds a console user (store.Store.CreateUser).
func (db *DB) CreateUser(ctx context.Context, email string, role store.Role, password string) (store.User, error) {
	return db.CreateUserBy(ctx, "", email, role, password)
}

// CreateUserBy is CreateUser writing the "user_create" audit entry of actor
// in the same transaction.
func (db *DB) CreateUserBy(ctx context.Context, actor, email string, role store.Role, password string) (store.User, error) {
	e, err := store.CheckUserEmail(email)
	if err != nil {
		return store.User{}, err
	}
	if err := store.CheckRole(role); err != nil {
		return store.User{}, err
	}
	hash, err := store.HashPassword(password)
	if err != nil {
		return store.User{}, err
	}
	now := db.now().UTC()
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO users (email, role, hash, created_at_ns, password_changed_at_ns)
			VALUES ($1, $2, $3, $4, $4) ON CONFLICT DO NOTHING`, e, string(role), hash, now.UnixNano())
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("user %q: %w", e, store.ErrExists)
		}
		return db.auditTx(ctx, tx, actor, "user_create", "user "+e+" role "+string(role))
	})
	if err != nil {
		return store.User{}, wrap(err)
	}
	return store.User{Email: e, Role: role, CreatedAt: now}, nil
}

// Users lists the console users by address.
func (db *DB) Users(ctx context.Context) ([]store.User, error) {
	rows, err := db.pool.Query(ctx, `SELECT email, role, created_at_ns FROM users ORDER BY email`)
	if err != nil {
		return nil, wrap(err)
	}
	var users []store.User
	var u store.User
	var role string
	var at int64
	_, err = pgx.ForEachRow(rows, []any{&u.Email, &role, &at}, func() error {
		users = append(users, store.User{Email: u.Email, Role: store.Role(role), CreatedAt: time.Unix(0, at).UTC()})
		return nil
	})
	return users, wrap(err)
}

// DeleteUser removes a console user and their sessions; ErrNotFound,
// ErrLastAdmin.
func (db *DB) DeleteUser(ctx context.Context, email string) error {
	return db.DeleteUserBy(ctx, "", email)
}

// DeleteUserBy is DeleteUser writing the "user_delete" audit entry of actor
// in the same transaction.
func (db *DB) DeleteUserBy(ctx context.Context, actor, email string) error {
	e := store.NormalizeEmail(email)
	return wrap(pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		var role string
		err := tx.QueryRow(ctx, `SELECT role FROM users WHERE email = $1 FOR UPDATE`, e).Scan(&role)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("user %q: %w", e, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		if err := keepAnAdmin(ctx, tx, role); err != nil {
			return fmt.Errorf("user %q: %w", e, err)
		}
		if _, err = tx.Exec(ctx, `DELETE FROM users WHERE email = $1`, e); err != nil { // sessions cascade
			return err
		}
		return db.auditTx(ctx, tx, actor, "user_delete", "user "+e)
	}))
}

// CheckPassword tells whether password is the user's; an unknown address
// costs the same hashing work.
func (db *DB) CheckPassword(ctx context.Context, email, password string) (store.User, bool) {
	e := store.NormalizeEmail(email)
	var role, hash string
	var at int64
	err := db.pool.QueryRow(ctx, `SELECT role, hash, created_at_ns FROM users WHERE email = $1`, e).Scan(&role, &hash, &at)
	if err != nil {
		hash = ""
	}
	if !store.PasswordMatches(hash, password) {
		return store.User{}, false
	}
	return store.User{Email: e, Role: store.Role(role), CreatedAt: time.Unix(0, at).UTC()}, true
}

// SetPassword replaces a user's password and ends their sessions.
func (db *DB) SetPassword(ctx context.Context, email, password string) error {
	e := store.NormalizeEmail(email)
	hash, err := store.HashPassword(password)
	if err != nil {
		return err
	}
	return wrap(pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE users SET hash = $2, password_changed_at_ns = $3 WHERE email = $1`, e, hash, db.now().UnixNano())
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("user %q: %w", e, store.ErrNotFound)
		}
		_, err = tx.Exec(ctx, `DELETE FROM sessions WHERE email = $1`, e)
		return err
	}))
}

// NewSession signs a user in for ttl; expired sessions go on the way.
func (db *DB) NewSession(ctx context.Context, email string, ttl time.Duration) (string, store.Session, error) {
	e := store.NormalizeEmail(email)
	id, err := store.NewSecret()
	if err != nil {
		return "", store.Session{}, err
	}
	csrf, err := store.NewSecret()
	if err != nil {
		return "", store.Session{}, err
	}
	now := db.now().UTC()
	expires := now.Add(ttl)
	var role string
	err = pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT role FROM users WHERE email = $1`, e).Scan(&role)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("user %q: %w", e, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM sessions WHERE expires_at_ns <= $1`, now.UnixNano()); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO sessions (key, email, csrf, created_at_ns, expires_at_ns) VALUES ($1, $2, $3, $4, $5)`,
			store.SessionKey(id), e, csrf, now.UnixNano(), expires.UnixNano())
		return err
	})
	if err != nil {
		return "", store.Session{}, wrap(err)
	}
	return id, store.Session{Email: e, Role: store.Role(role), CSRF: csrf, ExpiresAt: expires}, nil
}

// SessionFor finds the live session with this id, with the user's current
// role.
func (db *DB) SessionFor(ctx context.Context, id string) (store.Session, bool) {
	if id == "" || len(id) > 128 {
		return store.Session{}, false
	}
	var s store.Session
	var role string
	var expires int64
	err := db.pool.QueryRow(ctx, `SELECT s.email, u.role, s.csrf, s.expires_at_ns FROM sessions s JOIN users u ON u.email = s.email
		WHERE s.key = $1 AND s.expires_at_ns > $2`, store.SessionKey(id), db.now().UnixNano()).Scan(&s.Email, &role, &s.CSRF, &expires)
	if err != nil {
		return store.Session{}, false
	}
	s.Role, s.ExpiresAt = store.Role(role), time.Unix(0, expires).UTC()
	return s, true
}

// EndSession signs a session out; an unknown id is not an error.
func (db *DB) EndSession(ctx context.Context, id string) error {
	_, err := db.pool.Exec(ctx, `DELETE FROM sessions WHERE key = $1`, store.SessionKey(id))
	return wrap(err)
}
