using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace EmaLab.Dashboard.Data.Migrations
{
    /// <summary>
    /// Metrics.Value becomes nullable (NULL stands for NaN: a diverged loss is information, and one NaN must not
    /// fail a batch of other runs' rows). SQLite cannot drop NOT NULL in place and EF's rebuild would lose
    /// WITHOUT ROWID, so the table is rebuilt by hand with the same layout.
    /// </summary>
    public partial class NonFiniteMetricValues : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder) => Rebuild(migrationBuilder, "NULL");

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql("""DELETE FROM "Metrics" WHERE "Value" IS NULL;""");
            Rebuild(migrationBuilder, "NOT NULL");
        }

        static void Rebuild(MigrationBuilder migrationBuilder, string valueConstraint)
        {
            migrationBuilder.Sql($"""
                CREATE TABLE "Metrics_new" (
                    "RunId" INTEGER NOT NULL,
                    "Track" TEXT NOT NULL,
                    "Key" TEXT NOT NULL,
                    "Step" INTEGER NOT NULL,
                    "Value" REAL {valueConstraint},
                    "WallTimeMs" INTEGER NOT NULL,
                    CONSTRAINT "PK_Metrics" PRIMARY KEY ("RunId", "Key", "Track", "Step"),
                    CONSTRAINT "FK_Metrics_Runs_RunId" FOREIGN KEY ("RunId") REFERENCES "Runs" ("Id") ON DELETE CASCADE
                ) WITHOUT ROWID;
                INSERT INTO "Metrics_new" SELECT "RunId", "Track", "Key", "Step", "Value", "WallTimeMs" FROM "Metrics";
                DROP TABLE "Metrics";
                ALTER TABLE "Metrics_new" RENAME TO "Metrics";
                """);
        }
    }
}
