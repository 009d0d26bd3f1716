package topic

import (
	"errors"
	"strings"
	"testing"
)

// Vectors from the MQTT 5.0 specification (OASIS Standard, 7 March 2019),
// non-normative comments of sections 4.7.1.2, 4.7.1.3 and 4.7.3, and from
// Mosquitto's unit tests of mosquitto_pub_topic_check and
// mosquitto_sub_topic_check (eclipse-mosquitto/mosquitto,
// test/unit/libcommon/topic_test.c, formerly test/unit/util_topic_test.c;
// EPL-2.0/EDL-1.0, vectors restated here as data).
//
// Mosquitto also refuses topics of more than 200 levels (its vector is 200
// '/' followed by "a"); MQTT sets no limit, and the gateway's is lower
// still, EMQX's 128 (see TestValidateManyLevels).

func TestValidateName(t *testing.T) {
	tests := []struct {
		name string
		want error
	}{
		// Spec 4.7.3.
		{"ACCOUNTS", nil},
		{"Accounts", nil},
		{"Accounts payable", nil},
		{"/finance", nil},
		{"finance", nil},
		{"/", nil},
		{"", ErrEmpty},
		{"a\x00b", ErrNUL},
		{"\x00", ErrNUL},
		// Spec 4.7.1: wildcards are for filters only.
		{"sport/tennis/#", ErrWildcardInName},
		{"sport/+/player1", ErrWildcardInName},
		{"+", ErrWildcardInName},
		{"#", ErrWildcardInName},
		// Spec 4.7.2: '$' topics are valid names.
		{"$SYS/monitor/Clients", nil},
		{"$", nil},
		// Mosquitto TEST_pub_topic_valid.
		{"pub/topic", nil},
		{"pub//topic", nil},
		{"pub/ /topic", nil},
		// Mosquitto TEST_pub_topic_invalid.
		{"+pub/topic", ErrWildcardInName},
		{"pub+/topic", ErrWildcardInName},
		{"pub/+topic", ErrWildcardInName},
		{"pub/topic+", ErrWildcardInName},
		{"pub/topic/+", ErrWildcardInName},
		{"#pub/topic", ErrWildcardInName},
		{"pub#/topic", ErrWildcardInName},
		{"pub/#topic", ErrWildcardInName},
		{"pub/topic#", ErrWildcardInName},
		{"pub/topic/#", ErrWildcardInName},
		{"+/pub/topic", ErrWildcardInName},
		// UTF-8 (section 1.5.4).
		{"caf\u00e9/\u2603/\U0001F600", nil},
		{"ba\u211e", nil},
		{"\xff", ErrInvalidUTF8},
		{"a/\xc3", ErrInvalidUTF8},           // truncated sequence
		{"\xc0\xaf", ErrInvalidUTF8},         // overlong '/'
		{"\xed\xa0\x80", ErrInvalidUTF8},     // U+D800, a surrogate
		{"\xed\xbf\xbf", ErrInvalidUTF8},     // U+DFFF
		{"\xf4\x90\x80\x80", ErrInvalidUTF8}, // above U+10FFFF
		// Control characters and non-characters: refused (a MAY in 1.5.4,
		// which Mosquitto takes up by dropping the connection).
		{"a\x01b", ErrControl},
		{"a\x1f", ErrControl},
		{"a\x7f", ErrControl},
		{"a/\u0080", ErrControl},
		{"\u009f", ErrControl},
		{"\u00a0 nbsp", nil},
		{"\ufdd0", ErrNonCharacter},
		{"\ufdef", ErrNonCharacter},
		{"\ufdf0", nil},
		{"\ufffe", ErrNonCharacter},
		{"\uffff", ErrNonCharacter},
		{"\U0001fffe", ErrNonCharacter},
		{"\U0010ffff", ErrNonCharacter},
		{"\ufffd replacement", nil},
		{"\ufeffbom", nil},
		// Length.
		{strings.Repeat("a", MaxLength), nil},
		{strings.Repeat("a", MaxLength+1), ErrTooLong},
	}
	for _, tt := range tests {
		if got := ValidateName(tt.name); got != tt.want {
			t.Errorf("ValidateName(%.40q) = %v, want %v", tt.name, got, tt.want)
		}
		if got := refValidateName(tt.name); got != tt.want {
			t.Errorf("refValidateName(%.40q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestValidateFilter(t *testing.T) {
	tests := []struct {
		filter string
		want   error
	}{
		// Spec 4.7.1.2.
		{"sport/tennis/player1/#", nil},
		{"sport/#", nil},
		{"#", nil},
		{"sport/tennis/#", nil},
		{"sport/tennis#", ErrWildcardPlacement},
		{"sport/tennis/#/ranking", ErrWildcardPlacement},
		// Spec 4.7.1.3.
		{"+", nil},
		{"+/tennis/#", nil},
		{"sport+", ErrWildcardPlacement},
		{"sport/+/player1", nil},
		{"+/+", nil},
		{"/+", nil},
		// Spec 4.7.2 and 4.7.3.
		{"$SYS/#", nil},
		{"$SYS/monitor/+", nil},
		{"+/monitor/Clients", nil},
		{"/", nil},
		{"", ErrEmpty},
		{"a/\x00/#", ErrNUL},
		// Empty levels.
		{"a//b", nil},
		{"/a", nil},
		{"a/", nil},
		{"//", nil},
		{"+//#", nil},
		// Mosquitto TEST_sub_topic_valid.
		{"sub/topic", nil},
		{"sub//topic", nil},
		{"sub/ /topic", nil},
		{"sub/+/topic", nil},
		{"+/+/+", nil},
		{"+", nil},
		{"sub/topic/#", nil},
		{"sub//topic/#", nil},
		{"sub/ /topic/#", nil},
		{"sub/+/topic/#", nil},
		{"+/+/+/#", nil},
		{"#", nil},
		// Mosquitto TEST_sub_topic_invalid.
		{"+sub/topic", ErrWildcardPlacement},
		{"sub+/topic", ErrWildcardPlacement},
		{"sub/+topic", ErrWildcardPlacement},
		{"sub/topic+", ErrWildcardPlacement},
		{"#sub/topic", ErrWildcardPlacement},
		{"sub#/topic", ErrWildcardPlacement},
		{"sub/#topic", ErrWildcardPlacement},
		{"sub/topic#", ErrWildcardPlacement},
		{"#/sub/topic", ErrWildcardPlacement},
		// Mosquitto TEST_invalid (filters given to topic_matches_sub).
		{"foo#", ErrWildcardPlacement},
		{"fo#o/", ErrWildcardPlacement},
		{"foo/#a", ErrWildcardPlacement},
		{"#a", ErrWildcardPlacement},
		{"foo/#abc", ErrWildcardPlacement},
		{"#abc", ErrWildcardPlacement},
		{"/#a", ErrWildcardPlacement},
		// More placement edge cases.
		{"++", ErrWildcardPlacement},
		{"##", ErrWildcardPlacement},
		{"+#", ErrWildcardPlacement},
		{"#+", ErrWildcardPlacement},
		{"#/", ErrWildcardPlacement},
		{"#/#", ErrWildcardPlacement},
		{"a/+/#", nil},
		{"a/++/b", ErrWildcardPlacement},
		// Shared subscriptions (section 4.8.2): recognised and refused.
		{"$share/group/sport/#", ErrSharedSubscription},
		{"$share/group/+", ErrSharedSubscription},
		{"$share/group", ErrSharedSubscription},
		{"$share", ErrSharedSubscription},
		{"$share/g/a#", ErrWildcardPlacement}, // malformed before it is shared
		{"$shared/group/a", nil},
		{"$SHARE/group/a", nil},
		{"a/$share/b", nil},
		// Encoding and length.
		{"\xed\xa0\x80/#", ErrInvalidUTF8},
		{"foo/+/ba\u211e/#", nil},
		{strings.Repeat("a", MaxLength-2) + "/#", nil},
		{strings.Repeat("a", MaxLength-1) + "/#", ErrTooLong},
	}
	for _, tt := range tests {
		if got := ValidateFilter(tt.filter); got != tt.want {
			t.Errorf("ValidateFilter(%.40q) = %v, want %v", tt.filter, got, tt.want)
		}
		if got := refValidateFilter(tt.filter); got != tt.want {
			t.Errorf("refValidateFilter(%.40q) = %v, want %v", tt.filter, got, tt.want)
		}
	}
}

func TestValidateManyLevels(t *testing.T) {
	// Mosquitto drops a client that sends a topic of more than 200 levels
	// (its vector: 200 '/' and "a"); the gateway allows MaxLevels.
	for levels, want := range map[int]error{1: nil, MaxLevels: nil, MaxLevels + 1: ErrTooManyLevels, 201: ErrTooManyLevels} {
		deep := strings.Repeat("/", levels-1) + "a"
		if err := ValidateName(deep); err != want {
			t.Errorf("ValidateName(%d levels) = %v, want %v", levels, err, want)
		}
		if err := ValidateFilter(deep); err != want {
			t.Errorf("ValidateFilter(%d levels) = %v, want %v", levels, err, want)
		}
		if err := refValidateName(deep); err != want {
			t.Errorf("refValidateName(%d levels) = %v, want %v", levels, err, want)
		}
	}
	// Matching has no limit of its own.
	deep := strings.Repeat("/", 200) + "a"
	if !Match(deep, deep) || !Match(strings.Repeat("+/", 200)+"+", deep) {
		t.Error("a 201-level topic does not match itself or 201 '+' levels")
	}
}

func TestIsShared(t *testing.T) {
	for filter, want := range map[string]bool{
		"$share/g/a":   true,
		"$share/g/#":   true,
		"$share/g":     true,
		"$share/":      true,
		"$share":       true,
		"$sharex/g/a":  false,
		"$Share/g/a":   false,
		"share/g/a":    false,
		"a/$share/g/b": false,
		"$":            false,
		"":             false,
	} {
		if got := IsShared(filter); got != want {
			t.Errorf("IsShared(%q) = %v, want %v", filter, got, want)
		}
	}
}

// A shared subscription a dedicated client may hold: a share name of one
// level without wildcards, then a valid filter.
func TestValidateShared(t *testing.T) {
	for filter, want := range map[string]error{
		"$share/g/a":     nil,
		"$share/g/#":     nil,
		"$share/g/+/b":   nil,
		"$share/g//":     nil, // the filter "/", two empty levels
		"$share/g":       ErrShareName,
		"$share/":        ErrShareName,
		"$share":         ErrShareName,
		"$share//a":      ErrShareName,
		"$share/+/a":     ErrShareName,
		"$share/g#/a":    ErrShareName,
		"$share/g/":      ErrShareName,
		"a/b":            ErrShareName,
		"$share/g/a+":    ErrWildcardPlacement,
		"$share/g/#/a":   ErrWildcardPlacement,
		"$share/g/a\x00": ErrNUL,
		"$share/g/a\x7f": ErrControl,
		"":               ErrEmpty,
	} {
		if got := ValidateShared(filter); got != want {
			t.Errorf("ValidateShared(%q) = %v, want %v", filter, got, want)
		}
	}
}

func TestSharedFilter(t *testing.T) {
	for filter, want := range map[string]string{
		"$share/g/room/42/#": "room/42/#",
		"$share/g//":         "/",
		"$share/+/a":         "$share/+/a", // malformed: as it is
		"$share/g":           "$share/g",
		"room/42/#":          "room/42/#",
	} {
		if got := SharedFilter(filter); got != want {
			t.Errorf("SharedFilter(%q) = %q, want %q", filter, got, want)
		}
	}
}

func TestErrorsAreDistinctAndLowercase(t *testing.T) {
	errs := []error{ErrEmpty, ErrTooLong, ErrInvalidUTF8, ErrNUL, ErrControl, ErrNonCharacter, ErrTooManyLevels, ErrWildcardInName, ErrWildcardPlacement, ErrSharedSubscription, ErrShareName}
	for i, a := range errs {
		msg := a.Error()
		if !strings.HasPrefix(msg, "topic: ") || strings.ToLower(msg[:8]) != msg[:8] {
			t.Errorf("error message %q does not start with lowercase \"topic: \"", msg)
		}
		for j, b := range errs {
			if i != j && errors.Is(a, b) {
				t.Errorf("%v is %v", a, b)
			}
		}
	}
}

// Validation runs on every PUBLISH that comes up from a web client.
func TestValidateDoesNotAllocate(t *testing.T) {
	name := "sensors/building-12/floor-3/temperature"
	filter := "sensors/+/floor-3/#"
	if n := testing.AllocsPerRun(100, func() {
		_ = ValidateName(name)
		_ = ValidateFilter(filter)
		_ = ValidateFilter("a+")
	}); n != 0 {
		t.Errorf("validation allocates %v times per call", n)
	}
}
