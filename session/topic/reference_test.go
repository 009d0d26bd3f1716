package topic

import (
	"strings"
	"unicode/utf8"
)

// Reference implementations, written the obvious way with strings.Split and
// straight from the specification's wording, for the fast code to be checked
// against by the cross-checks and the fuzz targets.

// refMatch is Match by the book: the same contract (false for empty
// arguments, wildcards in the name, misplaced wildcards in the filter; no
// UTF-8 or NUL checks) with levels split up front.
func refMatch(filter, name string) bool {
	if filter == "" || name == "" || strings.ContainsAny(name, "+#") {
		return false
	}
	fl, nl := strings.Split(filter, "/"), strings.Split(name, "/")
	for i, l := range fl {
		if strings.ContainsAny(l, "+#") && l != "+" && !(l == "#" && i == len(fl)-1) {
			return false
		}
	}
	if strings.HasPrefix(name, "$") && (fl[0] == "+" || fl[0] == "#") {
		return false
	}
	for i, l := range fl {
		if l == "#" {
			return true // all levels before it matched; # takes the rest, or none
		}
		if i >= len(nl) || (l != "+" && l != nl[i]) {
			return false
		}
	}
	return len(fl) == len(nl)
}

// refCheckString, refValidateName and refValidateFilter restate the
// validation rules level by level.
func refCheckString(s string) error {
	if len(s) == 0 {
		return ErrEmpty
	}
	if len(s) > 65535 {
		return ErrTooLong
	}
	if len(strings.Split(s, "/")) > 128 {
		return ErrTooManyLevels
	}
	if !utf8.ValidString(s) {
		return ErrInvalidUTF8
	}
	for _, r := range s {
		switch {
		case r == 0:
			return ErrNUL
		case r <= 0x1f, r >= 0x7f && r <= 0x9f:
			return ErrControl
		case r >= 0xfdd0 && r <= 0xfdef, r%0x10000 == 0xfffe, r%0x10000 == 0xffff:
			return ErrNonCharacter
		}
	}
	return nil
}

func refValidateName(s string) error {
	if err := refCheckString(s); err != nil {
		return err
	}
	if strings.Contains(s, "+") || strings.Contains(s, "#") {
		return ErrWildcardInName
	}
	return nil
}

func refValidateFilter(s string) error {
	if err := refCheckString(s); err != nil {
		return err
	}
	levels := strings.Split(s, "/")
	for i, l := range levels {
		switch {
		case l == "+":
		case l == "#" && i == len(levels)-1:
		case strings.ContainsAny(l, "+#"):
			return ErrWildcardPlacement
		}
	}
	if levels[0] == "$share" {
		return ErrSharedSubscription
	}
	return nil
}
