using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace EmaLab.Dashboard.Data.Migrations
{
    /// <summary>A dataset input's <c>mlflow.data.context</c> tag as a column, so <c>search_runs</c> filters <c>datasets.context</c> in SQL.</summary>
    public partial class DatasetContext : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<string>(
                name: "Context",
                table: "RunInputs",
                type: "TEXT",
                nullable: true);
            // The context of the inputs logged before, from their tags.
            migrationBuilder.Sql("""
                UPDATE "RunInputs" SET "Context" = json_extract("TagsJson", '$."mlflow.data.context"') WHERE "TagsJson" IS NOT NULL;
                """);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropColumn(
                name: "Context",
                table: "RunInputs");
        }
    }
}
