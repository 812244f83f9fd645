package parsers

import (
	"math"
	"math/bits"
)

// Timestamps and durations are computed in integers from their decimal
// text, never through float64, so nanoseconds stay exact. Digits below one
// nanosecond are truncated toward zero. Nothing here allocates.

// The range of event times a record may carry: [MinEventTime,
// MaxEventTime), 1970-01-01T00:00:00Z up to (not including)
// 2262-01-01T00:00:00Z. A time outside it fails the record as invalid, code
// time_out_of_range, whatever its format; 0 (no time, or an OTLP time left
// unset) stays "no event time".
//
// Why these bounds: the upper one keeps every time, its window's end and
// the watermark's arithmetic well inside int64 nanoseconds (which end on
// 2262-04-11: an int64-max time made a window row ending in 1677 through
// overflow), with a hundred days to spare, far more than a window (at most
// a day) needs. The lower one is the Unix epoch: trace and log times
// before it are clock or unit bugs, and so is year 0001, the zero value
// of Go's time.Time ("0001-01-01T00:00:00Z" is what an unset time
// marshals to): well-formed RFC 3339 that parses, then is judged out of
// range here rather than counted into a window 2,000 years ago. Far-future
// times inside the range are the window stage's concern
// (windows.max_future).
const (
	MinEventTime int64 = 0                   // 1970-01-01T00:00:00Z
	MaxEventTime int64 = 9214646400000000000 // 2262-01-01T00:00:00Z
)

// tstatus is how reading a time or duration went.
type tstatus uint8

const (
	tOK    tstatus = iota
	tBad           // not a number, not RFC 3339, not a duration
	tRange         // well-formed, but its value does not fit int64 nanoseconds
)

// inEventRange reports whether n is inside [MinEventTime, MaxEventTime).
func inEventRange(n int64) bool { return n >= MinEventTime && n < MaxEventTime }

// eventTimeRange is the text of every time_out_of_range message.
const eventTimeRange = " is outside the supported range 1970-01-01T00:00:00Z to 2262-01-01T00:00:00Z"

// eventTimeFailure judges an event time, the field name, read as n with
// status st: a value that is not a time fails as bad_timestamp, with the
// message name + notTime; a time outside the range as time_out_of_range.
// Only a failure builds a message.
func eventTimeFailure(n int64, st tstatus, name, notTime string) failure {
	switch {
	case st == tBad:
		return failure{codeBadTimestamp, name + notTime}
	case st == tRange || !inEventRange(n):
		return failure{codeTimeOutOfRange, name + eventTimeRange}
	}
	return failure{}
}

// autoUnit picks the unit of a number whose integer part has nd digits, by
// DefaultTimeUnitRule.
func autoUnit(nd int64) int {
	switch {
	case nd <= 11:
		return unitS
	case nd <= 14:
		return unitMS
	case nd <= 17:
		return unitUS
	}
	return unitNS
}

// decimalNanos converts s, a number in RFC 8259 syntax, in the unit with
// exponent unit (unitAuto: by magnitude), to nanoseconds. The status is
// tBad when s is not a valid number, tRange when the result does not fit
// an int64.
func decimalNanos(s []byte, unit int) (int64, tstatus) {
	if !validNumber(s) {
		return 0, tBad
	}
	neg := s[0] == '-'
	if neg {
		s = s[1:]
	}
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	ip := s[:i]
	var fp []byte
	if i < len(s) && s[i] == '.' {
		j := i + 1
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		fp = s[i+1 : j]
		i = j
	}
	var exp int64
	if i < len(s) {
		i++ // e or E
		eneg := s[i] == '-'
		if s[i] == '+' || s[i] == '-' {
			i++
		}
		for ; i < len(s); i++ {
			if exp < 1<<40 {
				exp = exp*10 + int64(s[i]-'0')
			}
		}
		if eneg {
			exp = -exp
		}
	}
	// The value is the digits ip||fp times 10^e; the grammar allows a
	// leading zero only as a lone integer part.
	e := exp - int64(len(fp))
	if len(ip) == 1 && ip[0] == '0' {
		ip = ip[:0]
		for len(fp) > 0 && fp[0] == '0' {
			fp = fp[1:]
		}
	}
	sig := int64(len(ip) + len(fp))
	if sig == 0 {
		return 0, tOK
	}
	if unit == unitAuto {
		unit = autoUnit(sig + e)
	}
	n := sig + e + int64(unit) // digits of the integer result
	if n <= 0 {
		return 0, tOK
	}
	if n > 19 {
		return 0, tRange
	}
	var acc uint64
	k := int64(0)
	for _, c := range ip {
		if k == n {
			break
		}
		acc = acc*10 + uint64(c-'0')
		k++
	}
	for _, c := range fp {
		if k == n {
			break
		}
		acc = acc*10 + uint64(c-'0')
		k++
	}
	for ; k < n; k++ {
		acc *= 10
	}
	if neg {
		if acc > 1<<63 {
			return 0, tRange
		}
		return -int64(acc), tOK
	}
	if acc > math.MaxInt64 {
		return 0, tRange
	}
	return int64(acc), tOK
}

// parseRFC3339 reads YYYY-MM-DD(T|t| )hh:mm:ss(.fraction)?(Z|z|±hh:mm)
// into Unix nanoseconds. Any fraction length is accepted; digits past
// nanoseconds are dropped. A leap second (60) rolls into the next minute.
// Every year 0000..9999 parses; a time that int64 nanoseconds cannot hold
// (before 1677-09-21, after 2262-04-11) has status tRange, not tBad: it is
// a time, only not one this pipeline can carry.
func parseRFC3339(s []byte) (int64, tstatus) {
	if len(s) < 20 || s[4] != '-' || s[7] != '-' || s[13] != ':' || s[16] != ':' {
		return 0, tBad
	}
	if c := s[10]; c != 'T' && c != 't' && c != ' ' {
		return 0, tBad
	}
	for _, i := range [...]uint8{0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18} {
		if s[i]-'0' > 9 {
			return 0, tBad
		}
	}
	year := int(s[0]-'0')*1000 + int(s[1]-'0')*100 + int(s[2]-'0')*10 + int(s[3]-'0')
	month := int(s[5]-'0')*10 + int(s[6]-'0')
	day := int(s[8]-'0')*10 + int(s[9]-'0')
	hh := int(s[11]-'0')*10 + int(s[12]-'0')
	mm := int(s[14]-'0')*10 + int(s[15]-'0')
	ss := int(s[17]-'0')*10 + int(s[18]-'0')
	if month < 1 || month > 12 || day < 1 || day > daysIn(year, month) || hh > 23 || mm > 59 || ss > 60 {
		return 0, tBad
	}
	i := 19
	var frac int64
	if s[i] == '.' {
		i++
		start := i
		for i < len(s) && s[i]-'0' <= 9 {
			if i-start < 9 {
				frac = frac*10 + int64(s[i]-'0')
			}
			i++
		}
		if i == start {
			return 0, tBad
		}
		if nd := i - start; nd < 9 {
			frac *= pow10[9-nd]
		}
	}
	if i >= len(s) {
		return 0, tBad
	}
	var off int64
	switch s[i] {
	case 'Z', 'z':
		i++
	case '+', '-':
		if i+6 != len(s) || s[i+3] != ':' || s[i+1]-'0' > 9 || s[i+2]-'0' > 9 || s[i+4]-'0' > 9 || s[i+5]-'0' > 9 {
			return 0, tBad
		}
		oh := int64(s[i+1]-'0')*10 + int64(s[i+2]-'0')
		om := int64(s[i+4]-'0')*10 + int64(s[i+5]-'0')
		if oh > 23 || om > 59 {
			return 0, tBad
		}
		off = oh*3600 + om*60
		if s[i] == '-' {
			off = -off
		}
		i += 6
	default:
		return 0, tBad
	}
	if i != len(s) {
		return 0, tBad
	}
	secs := daysFromCivil(int64(year), int64(month), int64(day))*86400 + int64(hh*3600+mm*60+ss) - off
	// int64 nanoseconds span 1677-09-21 to 2262-04-11.
	const maxSec = int64(math.MaxInt64 / 1000000000)
	if secs > maxSec || secs < -maxSec || (secs == maxSec && frac > math.MaxInt64%1000000000) {
		return 0, tRange
	}
	return secs*1e9 + frac, tOK
}

var pow10 = [...]int64{1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9}

// atoiN reads a run of ASCII digits.
func atoiN(s []byte) (int, bool) {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func isLeap(y int) bool { return y%4 == 0 && (y%100 != 0 || y%400 == 0) }

func daysIn(y, m int) int {
	switch m {
	case 2:
		if isLeap(y) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil returns the days since 1970-01-01 of a proleptic Gregorian
// date. Years are counted from March so the leap day ends a year; a 400-year
// era has 146097 days.
func daysFromCivil(y, m, d int64) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400          // [0, 399]
	mp := (m + 9) % 12          // March = 0
	doy := (153*mp+2)/5 + d - 1 // [0, 365]
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468 // 719468: days from 0000-03-01 to 1970-01-01
}

// parseGoDuration reads a duration in Go syntax ("1h2m3.5s", "12.5ms",
// "300us", "0") into nanoseconds, exactly.
func parseGoDuration(s []byte) (int64, bool) {
	neg := false
	if len(s) > 0 && (s[0] == '-' || s[0] == '+') {
		neg = s[0] == '-'
		s = s[1:]
	}
	if len(s) == 1 && s[0] == '0' {
		return 0, true
	}
	if len(s) == 0 {
		return 0, false
	}
	var total uint64
	for len(s) > 0 {
		var whole uint64
		i := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			if whole > (math.MaxUint64-9)/10 {
				return 0, false
			}
			whole = whole*10 + uint64(s[i]-'0')
			i++
		}
		pre := i
		var frac, scale uint64 = 0, 1
		if i < len(s) && s[i] == '.' {
			i++
			for i < len(s) && s[i] >= '0' && s[i] <= '9' {
				if scale < 1e18 {
					frac = frac*10 + uint64(s[i]-'0')
					scale *= 10
				}
				i++
			}
		}
		if pre == 0 && scale == 1 {
			return 0, false // no digits at all
		}
		s = s[i:]
		j := 0
		for j < len(s) && (s[j] < '0' || s[j] > '9') && s[j] != '.' {
			j++
		}
		unit, ok := durationUnit(s[:j])
		if !ok {
			return 0, false
		}
		s = s[j:]
		hi, v := bits.Mul64(whole, unit)
		if hi != 0 {
			return 0, false
		}
		if frac > 0 {
			fh, fl := bits.Mul64(frac, unit)
			q, _ := bits.Div64(fh, fl, scale)
			var c uint64
			v, c = bits.Add64(v, q, 0)
			if c != 0 {
				return 0, false
			}
		}
		var c uint64
		total, c = bits.Add64(total, v, 0)
		if c != 0 || total > 1<<63 {
			return 0, false
		}
	}
	if neg {
		return -int64(total), true
	}
	if total > math.MaxInt64 {
		return 0, false
	}
	return int64(total), true
}

func durationUnit(u []byte) (uint64, bool) {
	switch string(u) {
	case "ns":
		return 1, true
	case "us", "µs", "μs":
		return 1e3, true
	case "ms":
		return 1e6, true
	case "s":
		return 1e9, true
	case "m":
		return 60e9, true
	case "h":
		return 3600e9, true
	}
	return 0, false
}
