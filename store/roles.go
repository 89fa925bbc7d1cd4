package store

import (
	"encoding/json"
	"errors"

	bolt "go.etcd.io/bbolt"
)

// Role is what an admin token or a console user may do (API.md "Roles").
type Role string

const (
	// RoleAdmin may do everything.
	RoleAdmin Role = "admin"
	// RoleViewer may read sites, the consent log, exports, subject access,
	// the audit log, verify and notices, and change nothing.
	RoleViewer Role = "viewer"
)

// ParseRole reads a role; "" is admin, the default of API.md.
func ParseRole(s string) (Role, error) {
	switch Role(s) {
	case "", RoleAdmin:
		return RoleAdmin, nil
	case RoleViewer:
		return RoleViewer, nil
	}
	return "", invalid("role", "%q: want admin or viewer", s)
}

// orAdmin reads a stored role: tokens made before roles existed have none
// and were admin tokens.
func orAdmin(r Role) Role {
	if r == "" {
		return RoleAdmin
	}
	return r
}

// ErrLastAdmin refuses to revoke or delete the last admin token or user.
var ErrLastAdmin = errors.New("it is the last admin token or user: create another admin first")

// adminCount counts the admin tokens and admin console users together: at
// least one of either kind must remain, so the server can always be run
// from its API or console.
func adminCount(tx *bolt.Tx) (int, error) {
	n := 0
	for _, name := range [][]byte{bucketTokens, bucketUsers} {
		err := tx.Bucket(name).ForEach(func(k, v []byte) error {
			var r struct {
				Role Role `json:"role"`
			}
			if err := json.Unmarshal(v, &r); err != nil {
				return ErrCorrupt
			}
			if orAdmin(r.Role) == RoleAdmin {
				n++
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	return n, nil
}

// keepAnAdmin refuses a change that would remove the admin whose stored
// value is v, if it is the last one.
func keepAnAdmin(tx *bolt.Tx, v []byte) error {
	var r struct {
		Role Role `json:"role"`
	}
	if err := json.Unmarshal(v, &r); err != nil {
		return ErrCorrupt
	}
	if orAdmin(r.Role) != RoleAdmin {
		return nil
	}
	n, err := adminCount(tx)
	if err != nil {
		return err
	}
	if n <= 1 {
		return ErrLastAdmin
	}
	return nil
}
