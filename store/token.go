package store

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Token is an admin token as listed; the secret itself is never stored.
type Token struct {
	Name      string    `json:"name"`
	Role      Role      `json:"role"`
	CreatedAt time.Time `json:"created_at"`
}

type storedToken struct {
	Hash      string    `json:"hash"` // hex SHA-256 of the whole token
	Role      Role      `json:"role,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

const tokenPrefix = "asn_"

var reTokenName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// CreateToken makes a new token with the admin role; see CreateTokenRole.
func (s *Store) CreateToken(name string) (string, error) {
	return s.CreateTokenRole(name, RoleAdmin)
}

// CreateTokenRole makes a new token with a role and returns it; only its
// SHA-256 is kept. An empty name becomes "admin-<n>". A name in use gives
// ErrExists.
func (s *Store) CreateTokenRole(name string, role Role) (string, error) {
	_, tok, err := s.createToken(name, role, "")
	return tok, err
}

// CreateTokenBy is CreateTokenRole writing the "token_create" audit entry
// of actor in the same transaction, under the name the token got (an empty
// name becomes "admin-<n>"); it returns that name and the token.
func (s *Store) CreateTokenBy(actor, name string, role Role) (string, string, error) {
	return s.createToken(name, role, actor)
}

func (s *Store) createToken(name string, role Role, actor string) (string, string, error) {
	tok, err := s.createTokenTx(&name, role, func(tx *bolt.Tx) error {
		if actor == "" {
			return nil
		}
		return putAudit(tx, s.now(), actor, "token_create", "token "+name+" role "+string(role))
	})
	return name, tok, err
}

func (s *Store) createTokenTx(namep *string, role Role, audit func(*bolt.Tx) error) (string, error) {
	name := *namep
	defer func() { *namep = name }()
	if role != RoleAdmin && role != RoleViewer {
		return "", invalid("role", "%q: want admin or viewer", role)
	}
	if name != "" && !reTokenName.MatchString(name) {
		return "", invalid("name", "%q must be 1-64 characters of letters, digits, '.', '_' and '-'", name)
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return "", err
	}
	token := tokenPrefix + base64.RawURLEncoding.EncodeToString(secret)
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTokens)
		if name == "" {
			for n := b.Stats().KeyN + 1; ; n++ {
				if name = "admin-" + strconv.Itoa(n); b.Get([]byte(name)) == nil {
					break
				}
			}
		} else if b.Get([]byte(name)) != nil {
			return fmt.Errorf("token %q: %w", name, ErrExists)
		}
		v, err := json.Marshal(storedToken{Hash: tokenHash(token), Role: role, CreatedAt: s.now().UTC()})
		if err != nil {
			return err
		}
		*namep = name
		if err := audit(tx); err != nil {
			return err
		}
		return b.Put([]byte(name), v)
	})
	if err != nil {
		return "", err
	}
	return token, nil
}

func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// CheckToken tells whether token is a live admin token, and its name.
func (s *Store) CheckToken(token string) (name string, ok bool) {
	t, ok := s.TokenFor(token)
	return t.Name, ok
}

// TokenFor finds the live token whose secret is token: its name and role.
// Every stored hash is compared, in constant time, so timing tells nothing.
func (s *Store) TokenFor(token string) (found Token, ok bool) {
	if !strings.HasPrefix(token, tokenPrefix) {
		return Token{}, false
	}
	want := []byte(tokenHash(token))
	s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTokens).ForEach(func(k, v []byte) error {
			var t storedToken
			if json.Unmarshal(v, &t) == nil && subtle.ConstantTimeCompare([]byte(t.Hash), want) == 1 {
				found, ok = Token{Name: string(k), Role: orAdmin(t.Role), CreatedAt: t.CreatedAt}, true
			}
			return nil
		})
	})
	return found, ok
}

// Tokens lists the admin tokens by name.
func (s *Store) Tokens() ([]Token, error) {
	var tokens []Token
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTokens).ForEach(func(k, v []byte) error {
			var t storedToken
			if err := json.Unmarshal(v, &t); err != nil {
				return fmt.Errorf("%w: token %q: %v", ErrCorrupt, k, err)
			}
			tokens = append(tokens, Token{Name: string(k), Role: orAdmin(t.Role), CreatedAt: t.CreatedAt})
			return nil
		})
	})
	return tokens, err
}

// RevokeToken deletes a token by name, or gives ErrNotFound; the last
// admin token or user gives ErrLastAdmin.
func (s *Store) RevokeToken(name string) error { return s.RevokeTokenBy("", name) }

// RevokeTokenBy is RevokeToken writing the "token_revoke" audit entry of
// actor (none when actor is "") in the same transaction.
func (s *Store) RevokeTokenBy(actor, name string) error {
	return s.update(func(tx *bolt.Tx) error {
		if actor != "" {
			if err := putAudit(tx, s.now(), actor, "token_revoke", "token "+name); err != nil {
				return err
			}
		}
		b := tx.Bucket(bucketTokens)
		v := b.Get([]byte(name))
		if v == nil {
			return fmt.Errorf("token %q: %w", name, ErrNotFound)
		}
		if err := keepAnAdmin(tx, v); err != nil {
			return fmt.Errorf("token %q: %w", name, err)
		}
		return b.Delete([]byte(name))
	})
}

// TokenCount is the number of admin tokens (0 on a first run).
func (s *Store) TokenCount() (int, error) {
	n := 0
	err := s.view(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketTokens).Stats().KeyN
		return nil
	})
	return n, err
}
