package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// PutNotice stores the exact texts shown to a visitor (the caller's canonical
// JSON bytes) once, keyed by their SHA-256, and returns "sha256:<hex>" for
// the record's notice_hash. Notices are few and repeat on every request, so a
// known one costs no transaction.
func (s *Store) PutNotice(texts []byte) (string, error) {
	sum := sha256.Sum256(texts)
	name := "sha256:" + hex.EncodeToString(sum[:])
	if _, ok := s.notices.Load(name); ok {
		return name, nil
	}
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketNotices)
		if b.Get(sum[:]) != nil {
			return nil
		}
		return b.Put(sum[:], bytes.Clone(texts))
	})
	if err != nil {
		return "", err
	}
	s.notices.Store(name, struct{}{})
	return name, nil
}

// Notice returns the texts stored under "sha256:<hex>", or ErrNotFound.
func (s *Store) Notice(hash string) ([]byte, error) {
	sum, err := hex.DecodeString(strings.TrimPrefix(hash, "sha256:"))
	if err != nil || len(sum) != sha256.Size || !strings.HasPrefix(hash, "sha256:") {
		return nil, fmt.Errorf("notice %q: %w", hash, ErrNotFound)
	}
	var texts []byte
	err = s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketNotices).Get(sum)
		if v == nil {
			return ErrNotFound
		}
		texts = bytes.Clone(v)
		return nil
	})
	return texts, err
}
