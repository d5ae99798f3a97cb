using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace EmaLab.Dashboard.Data.Migrations
{
    /// <summary>
    /// Times written before <see cref="EmaLabDbContext.SortableUtcText"/> had as many fractional digits as they needed
    /// (<c>05:27:08.1+00:00</c>); padded to seven, every stored time has the one sortable form. (All were UTC.)
    /// </summary>
    public partial class SortableTimes : Migration
    {
        static string Padded(string column) =>
            $"CASE WHEN substr({column}, 20, 1) = '.' THEN substr({column}, 1, 20) || substr(substr({column}, 21, length({column}) - 26) || '000000', 1, 7) || substr({column}, -6) " +
            $"ELSE substr({column}, 1, 19) || '.0000000' || substr({column}, -6) END";

        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql($"UPDATE Runs SET CreatedAt = {Padded("CreatedAt")}, StartedAt = {Padded("StartedAt")}, FinishedAt = {Padded("FinishedAt")};");
            migrationBuilder.Sql($"UPDATE Checkpoints SET CreatedAt = {Padded("CreatedAt")};");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {

        }
    }
}
