package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
)

// Render writes the reference of crds as Markdown: per kind its printer columns, the rules the
// API server checks at admission, and a table per object of its schema, nested objects in their
// own sections.
func Render(crds []apiextensionsv1.CustomResourceDefinition) string {
	var b strings.Builder
	b.WriteString("# API reference\n\n")
	b.WriteString("Generated from the CRDs in `config/crd/bases` (the types' doc comments and kubebuilder markers) by\n" +
		"`hack/apidocs`, which `make generate` runs; do not edit by hand. `kubectl explain mastodonmigration.spec`\n" +
		"shows the same descriptions on a cluster.\n\n")
	for _, crd := range crds {
		for _, v := range crd.Spec.Versions {
			if v.Served {
				fmt.Fprintf(&b, "- [%s](#%s) (`%s/%s`)\n", crd.Spec.Names.Kind, anchor(crd.Spec.Names.Kind, v.Name, ""), crd.Spec.Group, v.Name)
			}
		}
	}
	for _, crd := range crds {
		for _, v := range crd.Spec.Versions {
			if v.Served && v.Schema != nil && v.Schema.OpenAPIV3Schema != nil {
				kind(&b, crd, v)
			}
		}
	}
	return b.String()
}

// doc is the reference of one kind in one version.
type doc struct {
	b       *strings.Builder
	kind    string
	group   string
	version string
	// rules are the CEL rules met on the walk, for the kind's table of rules.
	rules []rule
}

type rule struct {
	// path is where the rule is; section, the path of the section that documents it (the
	// object's own, or its parent's for a scalar field).
	path, section string
	apiextensionsv1.ValidationRule
}

func kind(b *strings.Builder, crd apiextensionsv1.CustomResourceDefinition, v apiextensionsv1.CustomResourceDefinitionVersion) {
	d := &doc{b: b, kind: crd.Spec.Names.Kind, group: crd.Spec.Group, version: v.Name}
	root := v.Schema.OpenAPIV3Schema
	fmt.Fprintf(b, "\n<a id=\"%s\"></a>\n\n## %s\n\n", anchor(d.kind, d.version, ""), d.kind)
	if root.Description != "" {
		fmt.Fprintf(b, "%s\n\n", prose(text(root.Description)))
	}
	facts := []string{fmt.Sprintf("`apiVersion: %s/%s`", d.group, d.version), strings.ToLower(string(crd.Spec.Scope))}
	if n := crd.Spec.Names.ShortNames; len(n) > 0 {
		facts = append(facts, "short names "+codeList(n))
	}
	if c := crd.Spec.Names.Categories; len(c) > 0 {
		facts = append(facts, "categories "+codeList(c))
	}
	if v.Subresources != nil && v.Subresources.Status != nil {
		facts = append(facts, "status subresource")
	}
	fmt.Fprintf(b, "%s.\n", strings.Join(facts, ", "))
	if len(v.AdditionalPrinterColumns) > 0 {
		fmt.Fprintf(b, "\n`kubectl get %s` shows:\n\n| column | type | from | shown |\n|---|---|---|---|\n", crd.Spec.Names.Plural)
		for _, c := range v.AdditionalPrinterColumns {
			shown := "always"
			if c.Priority > 0 {
				shown = "with `-o wide`"
			}
			fmt.Fprintf(b, "| %s | %s | %s | %s |\n", c.Name, c.Type, cell(code(c.JSONPath)), shown)
		}
	}
	// The objects' sections are written aside first: walking them collects the rules, whose
	// table comes before them.
	var objects strings.Builder
	d.b = &objects
	d.object("", root)
	if len(d.rules) > 0 {
		fmt.Fprintf(b, "\nThe API server refuses a %s that breaks one of these rules (CEL, `x-kubernetes-validations`), with its message:\n\n"+
			"| on | message | rule |\n|---|---|---|\n", d.kind)
		for _, r := range d.rules {
			msg := r.Message
			if msg == "" && r.MessageExpression != "" {
				msg = "computed: " + code(r.MessageExpression)
			}
			on := "[" + d.kind + "](#" + anchor(d.kind, d.version, r.section) + ")"
			if r.path != "" {
				on = "[`" + r.path + "`](#" + anchor(d.kind, d.version, r.section) + ")"
			}
			fmt.Fprintf(b, "| %s | %s | %s |\n", on, cell(msg), cell(code(r.Rule)))
		}
	}
	b.WriteString(objects.String())
}

// object writes the section of the object at path (".spec.release"; "" is the root), then those
// of its nested objects.
func (d *doc) object(path string, s *apiextensionsv1.JSONSchemaProps) {
	if path == "" {
		// The kind's heading has the root's anchor and description.
		fmt.Fprintf(d.b, "\n### %s fields\n\n", d.kind)
	} else {
		fmt.Fprintf(d.b, "\n<a id=\"%s\"></a>\n\n### %s `%s`\n\n", anchor(d.kind, d.version, path), d.kind, path)
	}
	if path != "" && s.Description != "" {
		fmt.Fprintf(d.b, "%s\n\n", prose(text(s.Description)))
	}
	d.collectRules(path, s)
	required := map[string]bool{}
	for _, r := range s.Required {
		required[r] = true
	}
	names := make([]string, 0, len(s.Properties))
	for n := range s.Properties {
		names = append(names, n)
	}
	sort.Strings(names)
	d.b.WriteString("| field | type | default | validation | description |\n|---|---|---|---|---|\n")
	// The sections of the nested objects follow this one's, in the order of its fields.
	type section struct {
		path   string
		schema *apiextensionsv1.JSONSchemaProps
	}
	var nested []section
	for _, n := range names {
		p := s.Properties[n]
		typ, objPath := d.typeOf(path+"."+n, &p)
		if objPath != "" {
			nested = append(nested, section{objPath, objectSchema(&p)})
		}
		desc := text(p.Description)
		if path == "" {
			desc = standardField(n, d, desc)
		}
		checks := validation(&p)
		if required[n] {
			checks = append([]string{"required"}, checks...)
		}
		for _, r := range p.XValidations {
			if objPath == "" {
				checks = append(checks, "CEL: "+r.Message)
			}
		}
		fmt.Fprintf(d.b, "| `%s` | %s | %s | %s | %s |\n", n, typ, defaultOf(&p), cell(strings.Join(checks, "; ")), cell(desc))
	}
	if s.XPreserveUnknownFields != nil && *s.XPreserveUnknownFields {
		d.b.WriteString("\nFields not listed are kept as given.\n")
	}
	for _, n := range nested {
		d.object(n.path, n.schema)
	}
}

// collectRules records the CEL rules on s and on its scalar fields, which get no section.
func (d *doc) collectRules(path string, s *apiextensionsv1.JSONSchemaProps) {
	for _, r := range s.XValidations {
		d.rules = append(d.rules, rule{path: path, section: path, ValidationRule: r})
	}
	names := make([]string, 0, len(s.Properties))
	for n := range s.Properties {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := s.Properties[n]
		if objectSchema(&p) == nil {
			for _, r := range p.XValidations {
				d.rules = append(d.rules, rule{path: path + "." + n, section: path, ValidationRule: r})
			}
		}
	}
}

// objectSchema returns the object schema a field leads to when it gets a section of its own:
// the field itself, its items, or its map values, when they have properties.
func objectSchema(p *apiextensionsv1.JSONSchemaProps) *apiextensionsv1.JSONSchemaProps {
	switch {
	case len(p.Properties) > 0:
		return p
	case p.Items != nil && p.Items.Schema != nil && len(p.Items.Schema.Properties) > 0:
		return p.Items.Schema
	case p.AdditionalProperties != nil && p.AdditionalProperties.Schema != nil && len(p.AdditionalProperties.Schema.Properties) > 0:
		return p.AdditionalProperties.Schema
	}
	return nil
}

// typeOf describes a field's type, linking to the section of the object it leads to; objPath is
// that section's path, empty when it has none.
func (d *doc) typeOf(path string, p *apiextensionsv1.JSONSchemaProps) (typ, objPath string) {
	switch {
	case len(p.Properties) > 0:
		return fmt.Sprintf("[object](#%s)", anchor(d.kind, d.version, path)), path
	case p.Type == "array" && p.Items != nil && p.Items.Schema != nil:
		if len(p.Items.Schema.Properties) > 0 {
			return fmt.Sprintf("[][object](#%s)", anchor(d.kind, d.version, path+"[]")), path + "[]"
		}
		return "[]" + scalar(p.Items.Schema), ""
	case p.Type == "object" && p.AdditionalProperties != nil && p.AdditionalProperties.Schema != nil:
		if len(p.AdditionalProperties.Schema.Properties) > 0 {
			return fmt.Sprintf("map[string][object](#%s)", anchor(d.kind, d.version, path+"{}")), path + "{}"
		}
		return "map[string]" + scalar(p.AdditionalProperties.Schema), ""
	}
	return scalar(p), ""
}

func scalar(p *apiextensionsv1.JSONSchemaProps) string {
	switch {
	case p.XIntOrString:
		return "int or string"
	case p.Type == "object" && p.XPreserveUnknownFields != nil && *p.XPreserveUnknownFields:
		return "object (any fields)"
	case p.Format != "":
		return p.Type + " (" + p.Format + ")"
	case p.Type == "":
		return "any"
	}
	return p.Type
}

// validation lists what the schema checks on a field beyond its type, and on its items.
func validation(p *apiextensionsv1.JSONSchemaProps) []string {
	var out []string
	add := func(s *apiextensionsv1.JSONSchemaProps, of string) {
		if len(s.Enum) > 0 {
			vals := make([]string, len(s.Enum))
			for i, e := range s.Enum {
				vals[i] = code(enumValue(e.Raw))
			}
			out = append(out, of+"one of "+strings.Join(vals, ", "))
		}
		if s.Minimum != nil {
			out = append(out, of+bound(">", *s.Minimum, s.ExclusiveMinimum))
		}
		if s.Maximum != nil {
			out = append(out, of+bound("<", *s.Maximum, s.ExclusiveMaximum))
		}
		if s.MinLength != nil {
			out = append(out, of+"at least "+count(*s.MinLength, "character"))
		}
		if s.MaxLength != nil {
			out = append(out, of+"at most "+count(*s.MaxLength, "character"))
		}
		if s.Pattern != "" {
			out = append(out, of+"matches "+code(s.Pattern))
		}
		if s.MinProperties != nil {
			out = append(out, of+"at least "+count(*s.MinProperties, "entry"))
		}
		if s.MaxProperties != nil {
			out = append(out, of+"at most "+count(*s.MaxProperties, "entry"))
		}
	}
	add(p, "")
	if p.MinItems != nil {
		out = append(out, "at least "+count(*p.MinItems, "item"))
	}
	if p.MaxItems != nil {
		out = append(out, "at most "+count(*p.MaxItems, "item"))
	}
	if p.UniqueItems {
		out = append(out, "unique items")
	}
	if p.XListType != nil {
		switch *p.XListType {
		case "set":
			out = append(out, "a set (no duplicates)")
		case "map":
			out = append(out, "a map keyed by "+codeList(p.XListMapKeys))
		}
	}
	if p.Items != nil && p.Items.Schema != nil && len(p.Items.Schema.Properties) == 0 {
		add(p.Items.Schema, "each ")
		for _, r := range p.Items.Schema.XValidations {
			out = append(out, "each, CEL: "+r.Message)
		}
	}
	return out
}

// count is "1 item", "2 items" ("entry": "entries").
func count(n int64, noun string) string {
	switch {
	case n == 1:
		return "1 " + noun
	case strings.HasSuffix(noun, "y"):
		return fmt.Sprintf("%d %sies", n, strings.TrimSuffix(noun, "y"))
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func bound(dir string, v float64, exclusive bool) string {
	n := strconv.FormatFloat(v, 'f', -1, 64)
	switch {
	case dir == ">" && exclusive:
		return "above " + n
	case dir == ">":
		return "at least " + n
	case exclusive:
		return "below " + n
	}
	return "at most " + n
}

func defaultOf(p *apiextensionsv1.JSONSchemaProps) string {
	if p.Default == nil {
		return ""
	}
	return code(string(p.Default.Raw))
}

// enumValue shows a string enum value without its JSON quotes.
func enumValue(raw []byte) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(raw)
}

// standardField shortens the descriptions every Kubernetes object has.
func standardField(name string, d *doc, desc string) string {
	switch name {
	case "apiVersion":
		return "`" + d.group + "/" + d.version + "`"
	case "kind":
		return "`" + d.kind + "`"
	case "metadata":
		return "The object's name, namespace, labels and annotations (ObjectMeta)."
	}
	return desc
}

var nonAlnum = regexp.MustCompile(`[^a-z0-9]+`)

// anchor is the id of a section: kind, version when not the first, and path.
func anchor(kind, version, path string) string {
	return strings.Trim(nonAlnum.ReplaceAllString(strings.ToLower(kind+"-"+version+"-"+path), "-"), "-")
}

// text makes a doc comment one paragraph: its lines are joined, a list item or a new paragraph
// starts on a new line (<br>).
func text(desc string) string {
	lines := strings.Split(strings.TrimSpace(desc), "\n")
	var b strings.Builder
	for i, l := range lines {
		l = strings.TrimSpace(l)
		switch {
		case i == 0:
		case l == "":
			continue
		case strings.HasPrefix(l, "- ") || strings.HasPrefix(l, "* ") || lines[i-1] == "":
			b.WriteString("<br>")
		default:
			b.WriteString(" ")
		}
		b.WriteString(l)
	}
	return b.String()
}

// prose escapes angle brackets outside code spans, where a `<name>-handoff` would be taken
// for HTML; the <br> of text stays.
func prose(s string) string {
	parts := strings.Split(s, "`")
	for i := range parts {
		if i%2 == 0 {
			parts[i] = strings.NewReplacer("<br>", "<br>", "<", "&lt;", ">", "&gt;").Replace(parts[i])
		}
	}
	return strings.Join(parts, "`")
}

// cell escapes text for a table cell: prose, and every pipe, which GFM reads as a column's end
// even in a code span.
func cell(s string) string {
	return strings.ReplaceAll(prose(s), "|", `\|`)
}

// code is s as a code span; the span's fence is longer than any run of backticks in s.
func code(s string) string {
	fence := "`"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	pad := ""
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		pad = " "
	}
	return fence + pad + s + pad + fence
}

func codeList(items []string) string {
	out := make([]string, len(items))
	for i, s := range items {
		out[i] = code(s)
	}
	return strings.Join(out, ", ")
}
