package monitoringtest

import (
	"fmt"
	"regexp"
	"strings"

	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
)

// matcher says whether a series passes a filter.
type matcher func(*monitoringpb.TimeSeries) bool

// parseFilter parses the part of the monitoring filter language the operator writes:
//
//	filter      = conjunction { "OR" conjunction }
//	conjunction = term { "AND" term }
//	term        = "(" filter ")" | field "=" ( string | "monitoring.regex.full_match(" string ")" )
//
// Strings are double-quoted, a backslash escaping the next character. As the API does, it wants
// exactly one metric.type.
func parseFilter(s string) (matcher, error) {
	toks, err := tokenize(s)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	m, err := p.or()
	if err != nil {
		return nil, err
	}
	if p.pos != len(p.toks) {
		return nil, fmt.Errorf("unexpected %q", p.toks[p.pos])
	}
	if p.metricTypes != 1 {
		return nil, fmt.Errorf("the filter must name exactly one metric.type, names %d", p.metricTypes)
	}
	return m, nil
}

type parser struct {
	toks        []string
	pos         int
	metricTypes int
}

func (p *parser) peek() string {
	if p.pos < len(p.toks) {
		return p.toks[p.pos]
	}
	return ""
}

func (p *parser) next() string { t := p.peek(); p.pos++; return t }

func (p *parser) or() (matcher, error) {
	var anyOf []matcher
	for {
		m, err := p.and()
		if err != nil {
			return nil, err
		}
		anyOf = append(anyOf, m)
		if p.peek() != "OR" {
			break
		}
		p.next()
	}
	return func(ts *monitoringpb.TimeSeries) bool {
		for _, m := range anyOf {
			if m(ts) {
				return true
			}
		}
		return false
	}, nil
}

func (p *parser) and() (matcher, error) {
	var all []matcher
	for {
		m, err := p.term()
		if err != nil {
			return nil, err
		}
		all = append(all, m)
		if p.peek() != "AND" {
			break
		}
		p.next()
	}
	return func(ts *monitoringpb.TimeSeries) bool {
		for _, m := range all {
			if !m(ts) {
				return false
			}
		}
		return true
	}, nil
}

func (p *parser) term() (matcher, error) {
	if p.peek() == "(" {
		p.next()
		m, err := p.or()
		if err != nil {
			return nil, err
		}
		if p.next() != ")" {
			return nil, fmt.Errorf("missing )")
		}
		return m, nil
	}
	field := p.next()
	get, err := fieldOf(field)
	if err != nil {
		return nil, err
	}
	if op := p.next(); op != "=" {
		return nil, fmt.Errorf("after %s: want =, got %q", field, op)
	}
	if field == "metric.type" {
		p.metricTypes++
	}
	value := p.next()
	if value == "monitoring.regex.full_match" {
		if p.next() != "(" {
			return nil, fmt.Errorf("monitoring.regex.full_match needs (")
		}
		re, err := unquote(p.next())
		if err != nil {
			return nil, err
		}
		if p.next() != ")" {
			return nil, fmt.Errorf("monitoring.regex.full_match needs )")
		}
		rx, err := regexp.Compile(`\A(?:` + re + `)\z`)
		if err != nil {
			return nil, err
		}
		return func(ts *monitoringpb.TimeSeries) bool { return rx.MatchString(get(ts)) }, nil
	}
	want, err := unquote(value)
	if err != nil {
		return nil, err
	}
	return func(ts *monitoringpb.TimeSeries) bool { return get(ts) == want }, nil
}

func fieldOf(field string) (func(*monitoringpb.TimeSeries) string, error) {
	switch field {
	case "metric.type":
		return func(ts *monitoringpb.TimeSeries) string { return ts.GetMetric().GetType() }, nil
	case "resource.type":
		return func(ts *monitoringpb.TimeSeries) string { return ts.GetResource().GetType() }, nil
	}
	if name, ok := cutLabel(field, "resource"); ok {
		return func(ts *monitoringpb.TimeSeries) string { return ts.GetResource().GetLabels()[name] }, nil
	}
	if name, ok := cutLabel(field, "metric"); ok {
		return func(ts *monitoringpb.TimeSeries) string { return ts.GetMetric().GetLabels()[name] }, nil
	}
	return nil, fmt.Errorf("unknown field %q", field)
}

func unquote(tok string) (string, error) {
	if len(tok) < 2 || tok[0] != '"' {
		return "", fmt.Errorf("want a quoted string, got %q", tok)
	}
	var b strings.Builder
	for i := 1; i < len(tok)-1; i++ {
		if tok[i] == '\\' {
			i++
		}
		b.WriteByte(tok[i])
	}
	return b.String(), nil
}

func tokenize(s string) ([]string, error) {
	var toks []string
	for i := 0; i < len(s); {
		switch c := s[i]; {
		case c == ' ' || c == '\t' || c == '\n':
			i++
		case c == '(' || c == ')' || c == '=':
			toks = append(toks, string(c))
			i++
		case c == '"':
			j := i + 1
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' {
					j++
				}
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated string")
			}
			toks = append(toks, s[i:j+1])
			i = j + 1
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\n()=\"", rune(s[j])) {
				j++
			}
			toks = append(toks, s[i:j])
			i = j
		}
	}
	return toks, nil
}
