package store

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// User is a console user as listed; the password hash never leaves the store.
type User struct {
	Email     string    `json:"email"`
	Role      Role      `json:"role"`
	CreatedAt time.Time `json:"created_at"`
}

type storedUser struct {
	Role              Role      `json:"role"`
	Hash              string    `json:"hash"` // argon2id, PHC string
	CreatedAt         time.Time `json:"created_at"`
	PasswordChangedAt time.Time `json:"password_changed_at"`
}

// checkUserEmail is the light check of a console user's address: the
// console signs people in by it, nothing is mailed to it.
func checkUserEmail(email string) (string, error) {
	e := NormalizeEmail(email)
	at := strings.LastIndexByte(e, '@')
	if at < 1 || at == len(e)-1 || len(e) > 254 || strings.ContainsAny(e, " \t\r\n<>\"") {
		return "", invalid("email", "%q is not an email address", email)
	}
	return e, nil
}

// CreateUser adds a console user with a role and a password of at least
// MinPasswordLen characters, hashed with argon2id. An address in use gives
// ErrExists.
func (s *Store) CreateUser(email string, role Role, password string) (User, error) {
	return s.CreateUserBy("", email, role, password)
}

// CreateUserBy is CreateUser writing the "user_create" audit entry of actor
// (none when actor is "") in the same transaction.
func (s *Store) CreateUserBy(actor, email string, role Role, password string) (User, error) {
	e, err := checkUserEmail(email)
	if err != nil {
		return User{}, err
	}
	if role != RoleAdmin && role != RoleViewer {
		return User{}, invalid("role", "%q: want admin or viewer", role)
	}
	if err := checkPassword(password); err != nil {
		return User{}, err
	}
	hash, err := hashPassword(password)
	if err != nil {
		return User{}, err
	}
	now := s.now().UTC()
	u := storedUser{Role: role, Hash: hash, CreatedAt: now, PasswordChangedAt: now}
	err = s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketUsers)
		if b.Get([]byte(e)) != nil {
			return fmt.Errorf("user %q: %w", e, ErrExists)
		}
		if actor != "" {
			if err := putAudit(tx, s.now(), actor, "user_create", "user "+e+" role "+string(role)); err != nil {
				return err
			}
		}
		return putUser(tx, e, u)
	})
	if err != nil {
		return User{}, err
	}
	return User{Email: e, Role: role, CreatedAt: now}, nil
}

func putUser(tx *bolt.Tx, email string, u storedUser) error {
	v, err := json.Marshal(u)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketUsers).Put([]byte(email), v)
}

func getUser(tx *bolt.Tx, email string) (storedUser, bool, error) {
	v := tx.Bucket(bucketUsers).Get([]byte(email))
	if v == nil {
		return storedUser{}, false, nil
	}
	var u storedUser
	if err := json.Unmarshal(v, &u); err != nil {
		return storedUser{}, false, fmt.Errorf("%w: user %q: %v", ErrCorrupt, email, err)
	}
	return u, true, nil
}

// Users lists the console users by address.
func (s *Store) Users() ([]User, error) {
	var users []User
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketUsers).ForEach(func(k, v []byte) error {
			var u storedUser
			if err := json.Unmarshal(v, &u); err != nil {
				return fmt.Errorf("%w: user %q: %v", ErrCorrupt, k, err)
			}
			users = append(users, User{Email: string(k), Role: u.Role, CreatedAt: u.CreatedAt})
			return nil
		})
	})
	return users, err
}

// DeleteUser removes a console user and ends their sessions; an unknown
// address gives ErrNotFound, the last admin ErrLastAdmin.
func (s *Store) DeleteUser(email string) error { return s.DeleteUserBy("", email) }

// DeleteUserBy is DeleteUser writing the "user_delete" audit entry of actor
// (none when actor is "") in the same transaction.
func (s *Store) DeleteUserBy(actor, email string) error {
	e := NormalizeEmail(email)
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketUsers)
		v := b.Get([]byte(e))
		if v == nil {
			return fmt.Errorf("user %q: %w", e, ErrNotFound)
		}
		if err := keepAnAdmin(tx, v); err != nil {
			return fmt.Errorf("user %q: %w", e, err)
		}
		if err := b.Delete([]byte(e)); err != nil {
			return err
		}
		if actor != "" {
			if err := putAudit(tx, s.now(), actor, "user_delete", "user "+e); err != nil {
				return err
			}
		}
		return endSessionsOf(tx, e)
	})
}

// CheckPassword tells whether password is the user's. An unknown address
// costs the same hashing work as a known one and gives the same false.
func (s *Store) CheckPassword(email, password string) (User, bool) {
	e := NormalizeEmail(email)
	var u storedUser
	var found bool
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		u, found, err = getUser(tx, e)
		return err
	})
	if err != nil || !found {
		passwordMatches(dummyHash(), password)
		return User{}, false
	}
	if !passwordMatches(u.Hash, password) {
		return User{}, false
	}
	return User{Email: e, Role: u.Role, CreatedAt: u.CreatedAt}, true
}

// SetPassword replaces a user's password and ends all of their sessions
// (the caller signs the person in again where they changed it).
func (s *Store) SetPassword(email, password string) error {
	e := NormalizeEmail(email)
	if err := checkPassword(password); err != nil {
		return err
	}
	hash, err := hashPassword(password)
	if err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		u, found, err := getUser(tx, e)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("user %q: %w", e, ErrNotFound)
		}
		u.Hash, u.PasswordChangedAt = hash, s.now().UTC()
		if err := putUser(tx, e, u); err != nil {
			return err
		}
		return endSessionsOf(tx, e)
	})
}

// Session is a signed-in console user.
type Session struct {
	Email     string
	Role      Role
	CSRF      string // sent back by the console on every state-changing request
	ExpiresAt time.Time
}

type storedSession struct {
	Email     string    `json:"email"`
	CSRF      string    `json:"csrf"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Sessions live in the ledger, so a restart signs nobody out; only the
// SHA-256 of a session id is kept, so a copy of the file signs nobody in.
func sessionKey(id string) []byte {
	sum := sha256.Sum256([]byte(id))
	return sum[:]
}

func randomString() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// NewSession signs a user in for ttl and returns the session id (the
// cookie's value) and the session. Expired sessions are removed on the way.
func (s *Store) NewSession(email string, ttl time.Duration) (string, Session, error) {
	e := NormalizeEmail(email)
	id, err := randomString()
	if err != nil {
		return "", Session{}, err
	}
	csrf, err := randomString()
	if err != nil {
		return "", Session{}, err
	}
	now := s.now().UTC()
	ss := storedSession{Email: e, CSRF: csrf, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	var role Role
	err = s.update(func(tx *bolt.Tx) error {
		u, found, err := getUser(tx, e)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("user %q: %w", e, ErrNotFound)
		}
		role = u.Role
		if err := pruneSessions(tx, now); err != nil {
			return err
		}
		v, err := json.Marshal(ss)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketSessions).Put(sessionKey(id), v)
	})
	if err != nil {
		return "", Session{}, err
	}
	return id, Session{Email: e, Role: role, CSRF: csrf, ExpiresAt: ss.ExpiresAt}, nil
}

// SessionFor finds the live session with this id, with the user's current
// role: a deleted user or an expired session is signed out at once.
func (s *Store) SessionFor(id string) (Session, bool) {
	if id == "" || len(id) > 128 {
		return Session{}, false
	}
	var out Session
	ok := false
	s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketSessions).Get(sessionKey(id))
		if v == nil {
			return nil
		}
		var ss storedSession
		if json.Unmarshal(v, &ss) != nil || !s.now().Before(ss.ExpiresAt) {
			return nil
		}
		u, found, err := getUser(tx, ss.Email)
		if err != nil || !found {
			return nil
		}
		out, ok = Session{Email: ss.Email, Role: u.Role, CSRF: ss.CSRF, ExpiresAt: ss.ExpiresAt}, true
		return nil
	})
	return out, ok
}

// EndSession signs a session out; an unknown id is not an error.
func (s *Store) EndSession(id string) error {
	return s.update(func(tx *bolt.Tx) error { return tx.Bucket(bucketSessions).Delete(sessionKey(id)) })
}

// endSessionsOf removes every session of one user.
func endSessionsOf(tx *bolt.Tx, email string) error {
	return deleteSessionsIf(tx, func(ss storedSession) bool { return ss.Email == email })
}

// pruneSessions removes the expired sessions.
func pruneSessions(tx *bolt.Tx, now time.Time) error {
	return deleteSessionsIf(tx, func(ss storedSession) bool { return !now.Before(ss.ExpiresAt) })
}

func deleteSessionsIf(tx *bolt.Tx, match func(storedSession) bool) error {
	b := tx.Bucket(bucketSessions)
	var gone [][]byte
	err := b.ForEach(func(k, v []byte) error {
		var ss storedSession
		if json.Unmarshal(v, &ss) != nil || match(ss) {
			gone = append(gone, append([]byte(nil), k...))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range gone {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}
