package monitoringtest

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode"

	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
)

// matcher says whether a series passes a filter.
type matcher func(*monitoringpb.TimeSeries) (bool, error)

// parseFilter parses the part of the monitoring filter language the operator writes:
//
//	filter     = conjunction { "OR" conjunction }
//	conjunction = term { "AND" term }
//	term       = "(" filter ")" | field "=" ( string | "monitoring.regex.full_match(" string ")" )
//
// It requires exactly one metric.type, as the API does.
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
	var any []matcher
	for {
		m, err := p.and()
		if err != nil {
			return nil, err
		}
		any = append(any, m)
		if p.peek() != "OR" {
			break
		}
		p.next()
	}
	return func(ts *monitoringpb.TimeSeries) (bool, error) {
		for _, m := range any {
			if ok, err := m(ts); ok || err != nil {
				return ok, err
			}
		}
		return false, nil
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
	return func(ts *monitoringpb.TimeSeries) (bool, error) {
		for _, m := range all {
			if ok, err := m(ts); !ok || err != nil {
				return false, err
			}
		}
		return true, nil
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
	if op := p.next(); op != "=" {
		return nil, fmt.Errorf("after %s: want =, got %q", field, op)
	}
	get, err := fieldOf(field)
	if err != nil {
		return nil, err
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
		rx, err := regexp.Compile("^(?:" + re + ")$")
		if err != nil {
			return nil, err
		}
		return func(ts *monitoringpb.TimeSeries) (bool, error) { return rx.MatchString(get(ts)), nil }, nil
	}
	want, err := unquote(value)
	if err != nil {
		return nil, err
	}
	return func(ts *monitoringpb.TimeSeries) (bool, error) { return get(ts) == want, nil }, nil
}

func fieldOf(field string) (func(*monitoringpb.TimeSeries) string, error) {
	switch {
	case field == "metric.type":
		return func(ts *monitoringpb.TimeSeries) string { return ts.GetMetric().GetType() }, nil
	case field == "resource.type":
		return func(ts *monitoringpb.TimeSeries) string { return ts.GetResource().GetType() }, nil
	}
	for _, prefix := range []string{"resource.labels.", "resource.label."} {
		if name, ok := strings.CutPrefix(field, prefix); ok {
			return func(ts *monitoringpb.TimeSeries) string { return ts.GetResource().GetLabels()[name] }, nil
		}
	}
	for _, prefix := range []string{"metric.labels.", "metric.label."} {
		if name, ok := strings.CutPrefix(field, prefix); ok {
			return func(ts *monitoringpb.TimeSeries) string { return ts.GetMetric().GetLabels()[name] }, nil
		}
	}
	return nil, fmt.Errorf("unknown field %q", field)
}

func unquote(tok string) (string, error) {
	if !strings.HasPrefix(tok, `"`) {
		return "", fmt.Errorf("want a quoted string, got %q", tok)
	}
	return strconv.Unquote(tok)
}

func tokenize(s string) ([]string, error) {
	var toks []string
	for i := 0; i < len(s); {
		c := rune(s[i])
		switch {
		case unicode.IsSpace(c):
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
			for j < len(s) && !unicode.IsSpace(rune(s[j])) && !strings.ContainsRune("()=\"", rune(s[j])) {
				j++
			}
			toks = append(toks, s[i:j])
			i = j
		}
	}
	return toks, nil
}
