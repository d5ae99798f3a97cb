using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace EmaLab.Dashboard.Data.Migrations
{
    /// <inheritdoc />
    public partial class MetricsWithoutRowid : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            // The metric table is its primary key (the index every query uses): stored WITHOUT ROWID, each row is kept
            // once instead of twice (a rowid table plus the key's index), which halves the file and speeds writes.
            // EF Core cannot declare this, so a later migration that rebuilds the table must keep the clause.
            migrationBuilder.Sql(MetricsTable("Metrics_new", withoutRowid: true));
            migrationBuilder.Sql("INSERT INTO \"Metrics_new\" (\"RunId\", \"Key\", \"Track\", \"Step\", \"WallTimeMs\", \"Value\") SELECT \"RunId\", \"Key\", \"Track\", \"Step\", \"WallTimeMs\", \"Value\" FROM \"Metrics\";");
            migrationBuilder.Sql("DROP TABLE \"Metrics\";");
            migrationBuilder.Sql("ALTER TABLE \"Metrics_new\" RENAME TO \"Metrics\";");
        }

        static string MetricsTable(string name, bool withoutRowid) =>
            $"CREATE TABLE \"{name}\" (\"RunId\" INTEGER NOT NULL, \"Key\" TEXT NOT NULL, \"Track\" TEXT NOT NULL, \"Step\" INTEGER NOT NULL, " +
            "\"WallTimeMs\" INTEGER NOT NULL, \"Value\" REAL NULL, " +
            "CONSTRAINT \"PK_Metrics\" PRIMARY KEY (\"RunId\", \"Key\", \"Track\", \"Step\", \"WallTimeMs\"), " +
            "CONSTRAINT \"FK_Metrics_Runs_RunId\" FOREIGN KEY (\"RunId\") REFERENCES \"Runs\" (\"Id\") ON DELETE CASCADE)" +
            (withoutRowid ? " WITHOUT ROWID;" : ";");

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql(MetricsTable("Metrics_old", withoutRowid: false));
            migrationBuilder.Sql("INSERT INTO \"Metrics_old\" SELECT \"RunId\", \"Key\", \"Track\", \"Step\", \"WallTimeMs\", \"Value\" FROM \"Metrics\";");
            migrationBuilder.Sql("DROP TABLE \"Metrics\";");
            migrationBuilder.Sql("ALTER TABLE \"Metrics_old\" RENAME TO \"Metrics\";");
        }
    }
}
