using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace EmaLab.Dashboard.Data.PostgresMigrations
{
    /// <inheritdoc />
    public partial class MetricKeysCollateC : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AlterColumn<string>(
                name: "Track",
                table: "Metrics",
                type: "character varying(64)",
                maxLength: 64,
                nullable: false,
                collation: "C",
                oldClrType: typeof(string),
                oldType: "character varying(64)",
                oldMaxLength: 64);

            migrationBuilder.AlterColumn<string>(
                name: "Key",
                table: "Metrics",
                type: "character varying(250)",
                maxLength: 250,
                nullable: false,
                collation: "C",
                oldClrType: typeof(string),
                oldType: "character varying(250)",
                oldMaxLength: 250);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AlterColumn<string>(
                name: "Track",
                table: "Metrics",
                type: "character varying(64)",
                maxLength: 64,
                nullable: false,
                oldClrType: typeof(string),
                oldType: "character varying(64)",
                oldMaxLength: 64,
                oldCollation: "C");

            migrationBuilder.AlterColumn<string>(
                name: "Key",
                table: "Metrics",
                type: "character varying(250)",
                maxLength: 250,
                nullable: false,
                oldClrType: typeof(string),
                oldType: "character varying(250)",
                oldMaxLength: 250,
                oldCollation: "C");
        }
    }
}
