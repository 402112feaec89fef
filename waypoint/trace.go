package waypoint

import (
	"encoding/hex"
	"math/rand/v2"
	"net/http"
)

// traceparent handles W3C trace context: it keeps a valid incoming
// trace ID (and flags), starts a new span for the waypoint's hop, and
// generates a whole new traceparent when the request has none or an
// invalid one. It returns the trace ID for the access log.
func traceparent(h http.Header) string {
	in := h.Get("Traceparent")
	var tid [16]byte
	flags := "01"
	if ok := parseTraceparent(in, &tid); ok {
		flags = in[53:55]
	} else {
		fillRandom(tid[:])
		delete(h, "Tracestate")
	}
	var sid [8]byte
	fillRandom(sid[:])
	var b [55]byte
	copy(b[:], "00-")
	hex.Encode(b[3:35], tid[:])
	b[35] = '-'
	hex.Encode(b[36:52], sid[:])
	b[52] = '-'
	copy(b[53:], flags)
	h["Traceparent"] = []string{string(b[:])}
	return string(b[3:35])
}

func parseTraceparent(s string, tid *[16]byte) bool {
	// version "-" trace-id(32) "-" parent-id(16) "-" flags(2)
	if len(s) < 55 || s[2] != '-' || s[35] != '-' || s[52] != '-' || (len(s) > 55 && s[55] != '-') {
		return false
	}
	if s[:2] == "ff" || !isLowerHex(s[:2]) || !isLowerHex(s[53:55]) || !isLowerHex(s[36:52]) {
		return false
	}
	if s[:2] == "00" && len(s) != 55 {
		return false
	}
	if _, err := hex.Decode(tid[:], []byte(s[3:35])); err != nil || !isLowerHex(s[3:35]) {
		return false
	}
	return *tid != [16]byte{} && s[36:52] != "0000000000000000"
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func fillRandom(b []byte) {
	for i := 0; i < len(b); i += 8 {
		v := rand.Uint64()
		for j := 0; j < 8 && i+j < len(b); j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
}
