package values

// Merge merges chart values documents in the documented order: the generated values, then
// spec.release.values, then each spec.release.valuesFrom document, a later layer winning over
// an earlier one. Maps merge key by key, at every depth; anything else, lists included,
// replaces what was there. A null stays null, so that, as with a null given to `helm install`,
// it removes the chart's default. These are the semantics of `helm install -f a.yaml -f
// b.yaml`, and of chartutil.MergeTables(later, earlier), whose first argument is the one that
// wins. Merge modifies none of the layers; nil layers are skipped. The result is never nil.
func Merge(layers ...map[string]any) map[string]any {
	out := map[string]any{}
	for _, layer := range layers {
		mergeInto(out, layer)
	}
	return out
}

func mergeInto(dst, src map[string]any) {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				mergeInto(dm, sm)
				continue
			}
		}
		dst[k] = deepCopy(v)
	}
}

// deepCopy copies the maps and lists of a values tree, so that merging into the result never
// writes into a layer.
func deepCopy(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		l := make([]any, len(v))
		for i, e := range v {
			l[i] = deepCopy(e)
		}
		return l
	default:
		return v
	}
}
