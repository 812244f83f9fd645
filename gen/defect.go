package gen

import (
	"bytes"
	"slices"
	"unicode/utf8"
)

// defectPick holds defects repeated by weight; one uniform draw picks one.
var defectPick = func() []Defect {
	weights := [NumDefects]int{
		DefectTruncated:      25,
		DefectInvalidUTF8:    15,
		DefectControlChar:    10,
		DefectBadNumber:      10,
		DefectMissingTraceID: 15,
		DefectBareValue:      10,
		DefectJunk:           15,
	}
	var p []Defect
	for d, w := range weights {
		for range w {
			p = append(p, Defect(d))
		}
	}
	return p
}()

// pickDefect decides whether the next unit is malformed, and how.
func (g *generator) pickDefect() Defect {
	if g.o.Malformed == 0 || g.rd.Float64() >= g.o.Malformed {
		return DefectNone
	}
	return defectPick[g.rd.IntN(len(defectPick))]
}

// numberMarker precedes a number that every unit of the format holds.
func (g *generator) numberMarker() []byte {
	switch g.o.Format {
	case FormatJSONL:
		return []byte(`"duration_ns":`)
	case FormatOTLP:
		return []byte(`"kind":`)
	default:
		return []byte(`"duration":`)
	}
}

var nameMarker = []byte(`"name":"`)

// corrupt breaks the well-formed unit that starts at g.buf[start] (and runs
// to the end of g.buf) in the way d says.
func (g *generator) corrupt(start int, d Defect) {
	unit := g.buf[start:]
	rd := g.rd
	switch d {
	case DefectTruncated:
		// Any strict prefix of an object or array is invalid JSON. Cut at a
		// rune boundary so the line stays valid UTF-8.
		cut := 1 + rd.IntN(len(unit)-1)
		for cut > 1 && !utf8.RuneStart(unit[cut]) {
			cut--
		}
		g.buf = g.buf[:start+cut]
	case DefectInvalidUTF8, DefectControlChar:
		// Inside the first "name" string value (ASCII in every format).
		v := bytes.Index(unit, nameMarker) + len(nameMarker)
		e := bytes.IndexByte(unit[v:], '"')
		pos := start + v + rd.IntN(e+1)
		ins := badUTF8[rd.IntN(len(badUTF8))]
		if d == DefectControlChar {
			ins = controlChars[rd.IntN(len(controlChars))]
		}
		g.buf = slices.Insert(g.buf, pos, []byte(ins)...)
	case DefectBadNumber:
		m := g.numberMarker()
		p := bytes.Index(unit, m) + len(m)
		q := p
		for q < len(unit) && (unit[q] >= '0' && unit[q] <= '9') {
			q++
		}
		digits := unit[p:q]
		var bad []byte
		switch rd.IntN(8) {
		case 0:
			bad = append([]byte("0"), digits...) // leading zero
		case 1:
			bad = append(slices.Clip(digits), '.') // no fraction digits
		case 2:
			bad = append(slices.Clip(digits), 'e') // no exponent digits
		case 3:
			bad = append([]byte("+"), digits...) // leading plus
		case 4:
			bad = append([]byte("."), digits...) // no integer part
		case 5:
			bad = append([]byte("0x"), digits...) // hex
		case 6:
			bad = []byte("NaN")
		default:
			bad = append(slices.Clip(digits), "_000"...) // digit separator
		}
		g.buf = slices.Replace(g.buf, start+p, start+q, bad...)
	}
}
