package session

import "fmt"

// Code is a numbered protocol error code, the table in transport/PROTOCOL.md.
// Codes live here rather than in transport because sessions decide them and
// transport only carries them; they are in 4000-4999 so that each is also a
// valid WebSocket close code.
type Code uint32

// The error codes of protocol version 1. Keep in sync with PROTOCOL.md and
// the JavaScript client's ErrorCode table.
const (
	CodeOK                   Code = 0
	CodeMalformed            Code = 4000
	CodeUnsupportedVersion   Code = 4001
	CodeFrameTooLarge        Code = 4002
	CodeBadRequest           Code = 4003
	CodeHeartbeatTimeout     Code = 4004
	CodeSessionUnknown       Code = 4010
	CodeSessionSecret        Code = 4011
	CodeSessionGap           Code = 4012
	CodeTooManySessions      Code = 4013
	CodeSessionCount         Code = 4014
	CodeNotAuthenticated     Code = 4020
	CodeNotAuthorized        Code = 4021
	CodeHookUnavailable      Code = 4022
	CodeInvalidTopic         Code = 4030
	CodeInvalidFilter        Code = 4031
	CodeMessageTooLarge      Code = 4032
	CodeInvalidQoS           Code = 4033
	CodeUnknownBroker        Code = 4040
	CodeBrokerUnavailable    Code = 4041
	CodeBrokerRefused        Code = 4042
	CodeBrokerRejected       Code = 4043
	CodeBrokerTimeout        Code = 4044
	CodeClientConnected      Code = 4045
	CodeOverflow             Code = 4050
	CodeRateLimited          Code = 4051
	CodeTooManyClients       Code = 4052
	CodeTooManySubscriptions Code = 4053
	CodeShuttingDown         Code = 4090
	CodeInternal             Code = 4091
)

// Error is a failure that reaches the web client as a code and a message.
// The message is for humans; clients branch on the code.
type Error struct {
	Code    Code
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%s (%d)", e.Message, e.Code) }

// Errorf builds an *Error with a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}
