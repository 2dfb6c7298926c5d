package preflight

import (
	"context"
	"strings"
	"testing"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/database"
	"github.com/mastodon-operator/mastodon-operator/internal/database/sqladmintest"
)

// The databases come from the Admin API through the real client, served by sqladmintest; the
// finding names the databases besides Mastodon's (postgresql.database of the values) and says
// what level 3 does about them.
func TestCloudSQLDatabasesNamesTheOtherDatabases(t *testing.T) {
	ctx := context.Background()
	srv := sqladmintest.New(sqladmintest.Options{})
	t.Cleanup(srv.Close)
	srv.AddInstance("p", "alone")
	srv.AddInstance("p", "shared")
	for instance, dbs := range map[string][]string{"alone": {"mastodon_production"}, "shared": {"mastodon_production", "pixelfed", "wiki"}} {
		if err := srv.AddDatabase("p", instance, dbs...); err != nil {
			t.Fatal(err)
		}
	}
	db, err := database.NewCloudSQL(ctx, srv.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]any{"postgresql": map[string]any{"database": "mastodon_production"}}
	input := func(instance string, shared v1alpha1.SharedInstance) Input {
		m := &v1alpha1.MastodonMigration{}
		m.Spec.Rollback.Database.CloudSQL = &v1alpha1.CloudSQLInstance{Project: "p", Instance: instance, SharedInstance: shared}
		return Input{Migration: m, Databases: db.Databases,
			Values: func(context.Context) (map[string]any, error) { return values, nil }}
	}
	for _, c := range []struct {
		instance string
		shared   v1alpha1.SharedInstance
		want     string
	}{
		{"alone", "", "holds 2 databases (postgres, mastodon_production): none besides Mastodon's mastodon_production and Cloud SQL's own"},
		{"shared", "", "shared: besides Mastodon's mastodon_production it holds pixelfed, wiki; restoring its backup rewinds them too, " +
			"so a level 3 rollback refuses unless spec.rollback.database.cloudSQL.sharedInstance is confirmed"},
		{"shared", v1alpha1.SharedInstanceConfirmed, "shared: besides Mastodon's mastodon_production it holds pixelfed, wiki; " +
			"sharedInstance is confirmed"},
		{"gone", "", "could not list its databases (listing the databases of Cloud SQL instance gone in project p: "},
	} {
		found, err := cloudSQLDatabases(ctx, input(c.instance, c.shared))
		if err != nil {
			t.Fatal(err)
		}
		if len(found) != 1 || found[0].Class != v1alpha1.FindingInformational || found[0].Object != "Cloud SQL instance p/"+c.instance ||
			!strings.HasPrefix(found[0].Message, c.want) {
			t.Errorf("%s (sharedInstance %q): %+v, want one Informational finding starting %q", c.instance, c.shared, found, c.want)
		}
	}

	// Without a Cloud SQL instance, or without the API, there is nothing to list.
	if found, err := cloudSQLDatabases(ctx, Input{Migration: &v1alpha1.MastodonMigration{}, Databases: db.Databases}); err != nil || found != nil {
		t.Errorf("without spec.rollback.database.cloudSQL: %v, %v", found, err)
	}
}

func TestNamesCountsWhatItDoesNotList(t *testing.T) {
	var many []string
	for range 25 {
		many = append(many, "db")
	}
	if got := Names(many); !strings.HasSuffix(got, "db and 5 more") || strings.Count(got, "db") != 20 {
		t.Errorf("Names of 25 = %q", got)
	}
	if got := Names([]string{"a", "b"}); got != "a, b" {
		t.Errorf("Names = %q", got)
	}
}
