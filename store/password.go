package store

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/crypto/argon2"
)

// Argon2id parameters: OWASP's first recommended set (19 MiB, two passes,
// one lane), which costs tens of milliseconds here and keeps a burst of
// sign-ins from exhausting a small server's memory.
const (
	argonMemory  = 19 * 1024 // KiB
	argonTime    = 2
	argonThreads = 1
	argonKeyLen  = 32
	argonSaltLen = 16
)

// MinPasswordLen is the shortest console password accepted, in characters.
const MinPasswordLen = 12

// maxPasswordLen bounds the work a sign-in can ask of the server.
const maxPasswordLen = 1024

// checkPassword says what is wrong with a new password, in words.
func checkPassword(pw string) error {
	switch n := len([]rune(pw)); {
	case n < MinPasswordLen:
		return invalid("password", "must be at least %d characters (this one has %d)", MinPasswordLen, n)
	case len(pw) > maxPasswordLen:
		return invalid("password", "must be at most %d bytes", maxPasswordLen)
	}
	return nil
}

// hashPassword gives the PHC string of an argon2id hash of pw with a fresh
// salt: $argon2id$v=19$m=…,t=…,p=…$salt$hash (base64 without padding).
func hashPassword(pw string) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(pw), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// passwordMatches checks pw against a PHC string made by hashPassword, with
// the parameters stored in it (so they can be raised later).
func passwordMatches(phc, pw string) bool {
	parts := strings.Split(phc, "$")
	if len(parts) != 6 || parts[1] != "argon2id" || len(pw) > maxPasswordLen {
		return false
	}
	var version int
	var memory, passes uint32
	var threads uint8
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &memory, &passes, &threads); err != nil ||
		memory == 0 || memory > 1<<20 || passes == 0 || passes > 16 || threads == 0 {
		return false
	}
	b64 := base64.RawStdEncoding
	salt, err1 := b64.DecodeString(parts[4])
	want, err2 := b64.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false
	}
	got := argon2.IDKey([]byte(pw), salt, passes, memory, threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// dummyHash is compared against when an email is unknown, so a sign-in
// takes as long whether or not the address has an account.
// It is made on first use, not at start, so the CLI does not pay for it.
var dummyHash = sync.OnceValue(func() string {
	h, err := hashPassword("no account has this password")
	if err != nil {
		panic(err)
	}
	return h
})
