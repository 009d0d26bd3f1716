package topic

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// MaxLength is the longest topic name or filter in bytes: MQTT encodes
// strings with a two-byte length prefix (section 1.5.4).
const MaxLength = 65535

// Validation errors. They are sentinels, returned as they are (never
// wrapped), so that callers can map them to MQTT reason codes with
// errors.Is: on a PUBLISH every one of them is 0x90 (Topic Name invalid);
// on a SUBSCRIBE ErrSharedSubscription is 0x9E (Shared Subscriptions not
// supported) and the others are 0x8F (Topic Filter invalid).
var (
	// ErrEmpty: names and filters must be at least one byte long
	// [MQTT-4.7.3-1].
	ErrEmpty = errors.New("topic: empty topic")
	// ErrTooLong: longer than MaxLength bytes, so it cannot be encoded.
	ErrTooLong = errors.New("topic: longer than 65535 bytes")
	// ErrInvalidUTF8: not well-formed UTF-8, which includes the encodings of
	// the surrogates U+D800..U+DFFF [MQTT-1.5.4-1].
	ErrInvalidUTF8 = errors.New("topic: invalid utf-8")
	// ErrNUL: holds U+0000 [MQTT-1.5.4-2] [MQTT-4.7.3-2].
	ErrNUL = errors.New("topic: contains a nul character")
	// ErrControl: holds a control character, U+0001..U+001F or
	// U+007F..U+009F (section 1.5.4).
	ErrControl = errors.New("topic: contains a control character")
	// ErrNonCharacter: holds a Unicode non-character, U+FDD0..U+FDEF or
	// one whose last 16 bits are FFFE or FFFF (section 1.5.4).
	ErrNonCharacter = errors.New("topic: contains a unicode non-character")
	// ErrTooManyLevels: more than MaxLevels levels.
	ErrTooManyLevels = errors.New("topic: more than 128 levels")
	// ErrWildcardInName: a topic name holds '+' or '#' [MQTT-3.3.2-2].
	ErrWildcardInName = errors.New("topic: wildcard '+' or '#' in a topic name")
	// ErrWildcardPlacement: a filter has a wildcard that is not a whole level,
	// or a '#' that is not the last level [MQTT-4.7.1-1] [MQTT-4.7.1-2].
	ErrWildcardPlacement = errors.New("topic: a wildcard must be a whole level, and '#' only the last one")
	// ErrSharedSubscription: the filter is a shared subscription
	// ("$share/<group>/<filter>", section 4.8.2), which the gateway refuses.
	ErrSharedSubscription = errors.New("topic: shared subscriptions ($share/...) are not supported")
	// ErrShareName: a shared subscription that is not
	// "$share/<share name>/<filter>" with a share name of one level
	// without wildcards (section 4.8.2) [MQTT-4.8.2-1] [MQTT-4.8.2-2].
	ErrShareName = errors.New("topic: a shared subscription is $share/<share name>/<filter>, its share name one level without + or #")
)

// MaxLevels is the most levels a topic name or filter may have. MQTT sets
// no limit, brokers do (EMQX 128 by default, Mosquitto 200), and Mosquitto
// drops the connection of a client that goes over it.
const MaxLevels = 128

// ValidateName reports whether name can be published to: non-empty, at most
// MaxLength bytes and MaxLevels levels, an MQTT string brokers take (see
// ValidateText), and no wildcard.
//
// The specification only lets receivers refuse control characters and
// non-characters (section 1.5.4: "MAY treat it as malformed"), and
// Mosquitto does: it drops the connection that carries one. Behind the
// gateway that connection is every session's (the shared connection), so
// the gateway refuses them first.
func ValidateName(name string) error {
	if err := checkString(name); err != nil {
		return err
	}
	if strings.IndexByte(name, '+') >= 0 || strings.IndexByte(name, '#') >= 0 {
		return ErrWildcardInName
	}
	return nil
}

// ValidateFilter reports whether filter can be subscribed to through the
// gateway: non-empty, at most MaxLength bytes and MaxLevels levels, an MQTT
// string brokers take (see ValidateText), '+' only as a whole level and '#' only as the whole last level. Empty levels
// are valid ("a//b", "/a", "a/").
//
// A shared subscription (see IsShared) is otherwise checked like any filter
// and then refused with ErrSharedSubscription: behind the gateway's fan-out
// one broker subscription serves many web clients, so the broker's
// load-balancing between members of a share group would balance between
// gateway connections, not between the web clients that asked for it. A
// client with a broker connection of its own may hold one (ValidateShared).
func ValidateFilter(filter string) error {
	if err := checkFilter(filter); err != nil {
		return err
	}
	if IsShared(filter) {
		return ErrSharedSubscription
	}
	return nil
}

// ValidateShared reports whether a shared subscription (see IsShared) is
// well formed: "$share/", a share name (ValidateShareName), '/', then a
// filter ValidateFilter takes. Only a client with a broker connection of
// its own may subscribe to one (ValidateFilter says why): its broker
// balances the group's messages between its members, that client one of
// them.
func ValidateShared(filter string) error {
	_, _, err := parseShared(filter)
	return err
}

// ValidateShareName reports whether name can be a share name: at least one
// character, no '/', '+' or '#' (section 4.8.2), and an MQTT string brokers
// take (ValidateText).
func ValidateShareName(name string) error {
	if name == "" || strings.ContainsAny(name, "/+#") {
		return ErrShareName
	}
	return ValidateText(name)
}

// parseShared checks a shared subscription and splits it into its share
// name and the filter after it.
func parseShared(filter string) (name, inner string, err error) {
	if err := checkString(filter); err != nil {
		return "", "", err
	}
	if !IsShared(filter) {
		return "", "", ErrShareName
	}
	name, inner, ok := strings.Cut(strings.TrimPrefix(filter, "$share/"), "/")
	if !ok || inner == "" || ValidateShareName(name) != nil {
		return "", "", ErrShareName
	}
	if err := checkFilter(inner); err != nil {
		return "", "", err
	}
	return name, inner, nil
}

// SplitShared is a well-formed shared subscription's share name and the
// filter after it, the one its messages match: "g" and "room/42/#" for
// "$share/g/room/42/#". ok is false for any other filter, which costs a
// prefix check: the hook's matcher and the frequency table ask it of
// every filter.
func SplitShared(filter string) (name, inner string, ok bool) {
	if !IsShared(filter) {
		return "", "", false
	}
	name, inner, err := parseShared(filter)
	return name, inner, err == nil
}

// SharedFilter is the filter a well-formed shared subscription holds after
// its share name (SplitShared); any other filter is returned as it is.
func SharedFilter(filter string) string {
	if _, inner, ok := SplitShared(filter); ok {
		return inner
	}
	return filter
}

// IsShared reports whether filter is an MQTT 5 shared subscription, that is
// whether its first level is "$share" (section 4.8.2). A filter such as
// "$share/group" with no topic filter after the group is a malformed shared
// subscription, not a plain filter, so it counts as shared too.
//
// Elsewhere in this package (Match, Contains, Index) a "$share/..." filter is
// treated literally, as a filter whose first level is "$share". That never
// widens what it matches: only a pattern that itself starts with "$share"
// contains it.
func IsShared(filter string) bool {
	return strings.HasPrefix(filter, "$share") && (len(filter) == len("$share") || filter[len("$share")] == '/')
}

// checkFilter is ValidateFilter without the shared-subscription refusal: the
// syntax rules that Contains and Index need for their own correctness.
func checkFilter(filter string) error {
	if err := checkString(filter); err != nil {
		return err
	}
	// Find each wildcard with IndexAny, then look at its neighbours: a
	// wildcard must be delimited by '/' or the ends of the filter, and '#'
	// must be the last byte.
	for i := 0; ; i++ {
		j := strings.IndexAny(filter[i:], "+#")
		if j < 0 {
			return nil
		}
		i += j
		if i > 0 && filter[i-1] != '/' {
			return ErrWildcardPlacement
		}
		if filter[i] == '#' {
			if i != len(filter)-1 {
				return ErrWildcardPlacement
			}
		} else if i+1 < len(filter) && filter[i+1] != '/' {
			return ErrWildcardPlacement
		}
	}
}

// checkString applies the rules that names and filters share.
func checkString(s string) error {
	switch {
	case s == "":
		return ErrEmpty
	case len(s) > MaxLength:
		return ErrTooLong
	case strings.Count(s, "/") >= MaxLevels:
		return ErrTooManyLevels
	}
	return ValidateText(s)
}

// ValidateText reports whether s is an MQTT UTF-8 string that brokers take
// (section 1.5.4): well-formed UTF-8 (no surrogates), no U+0000, no control
// character and no Unicode non-character, which Mosquitto takes for a
// malformed packet. Property strings (content type, user properties),
// client IDs and user names follow the same rules as topics.
func ValidateText(s string) error {
	if !utf8.ValidString(s) {
		return ErrInvalidUTF8
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == 0:
				return ErrNUL
			case c < 0x20 || c == 0x7f:
				return ErrControl
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r <= 0x9f:
			return ErrControl
		case r >= 0xfdd0 && r <= 0xfdef, r&0xfffe == 0xfffe:
			return ErrNonCharacter
		}
		i += size
	}
	return nil
}
