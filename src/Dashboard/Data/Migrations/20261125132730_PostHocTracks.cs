using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace EmaLab.Dashboard.Data.Migrations
{
    /// <inheritdoc />
    public partial class PostHocTracks : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<double>(
                name: "SigmaRel",
                table: "Tracks",
                type: "REAL",
                nullable: true);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropColumn(
                name: "SigmaRel",
                table: "Tracks");
        }
    }
}
