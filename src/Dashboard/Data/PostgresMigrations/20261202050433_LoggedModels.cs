using Microsoft.EntityFrameworkCore.Migrations;
using Npgsql.EntityFrameworkCore.PostgreSQL.Metadata;

#nullable disable

namespace EmaLab.Dashboard.Data.PostgresMigrations
{
    /// <inheritdoc />
    public partial class LoggedModels : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateTable(
                name: "LoggedModels",
                columns: table => new
                {
                    Id = table.Column<string>(type: "character varying(34)", maxLength: 34, nullable: false),
                    ExperimentId = table.Column<long>(type: "bigint", nullable: false),
                    Name = table.Column<string>(type: "character varying(500)", maxLength: 500, nullable: false),
                    SourceRunId = table.Column<long>(type: "bigint", nullable: true),
                    ModelType = table.Column<string>(type: "character varying(250)", maxLength: 250, nullable: true),
                    Status = table.Column<int>(type: "integer", nullable: false),
                    StatusMessage = table.Column<string>(type: "text", nullable: true),
                    CreationTimeMs = table.Column<long>(type: "bigint", nullable: false),
                    LastUpdatedTimeMs = table.Column<long>(type: "bigint", nullable: false),
                    Deleted = table.Column<bool>(type: "boolean", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_LoggedModels", x => x.Id);
                    table.ForeignKey(
                        name: "FK_LoggedModels_Experiments_ExperimentId",
                        column: x => x.ExperimentId,
                        principalTable: "Experiments",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Restrict);
                    table.ForeignKey(
                        name: "FK_LoggedModels_Runs_SourceRunId",
                        column: x => x.SourceRunId,
                        principalTable: "Runs",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateTable(
                name: "RunInputs",
                columns: table => new
                {
                    Id = table.Column<long>(type: "bigint", nullable: false)
                        .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityByDefaultColumn),
                    RunId = table.Column<long>(type: "bigint", nullable: false),
                    ModelId = table.Column<string>(type: "text", nullable: true),
                    DatasetName = table.Column<string>(type: "text", nullable: true),
                    DatasetDigest = table.Column<string>(type: "text", nullable: true),
                    SourceType = table.Column<string>(type: "text", nullable: true),
                    Source = table.Column<string>(type: "text", nullable: true),
                    Schema = table.Column<string>(type: "text", nullable: true),
                    Profile = table.Column<string>(type: "text", nullable: true),
                    TagsJson = table.Column<string>(type: "text", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_RunInputs", x => x.Id);
                    table.ForeignKey(
                        name: "FK_RunInputs_Runs_RunId",
                        column: x => x.RunId,
                        principalTable: "Runs",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateTable(
                name: "RunOutputs",
                columns: table => new
                {
                    RunId = table.Column<long>(type: "bigint", nullable: false),
                    ModelId = table.Column<string>(type: "text", nullable: false),
                    Step = table.Column<long>(type: "bigint", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_RunOutputs", x => new { x.RunId, x.ModelId, x.Step });
                    table.ForeignKey(
                        name: "FK_RunOutputs_Runs_RunId",
                        column: x => x.RunId,
                        principalTable: "Runs",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateTable(
                name: "LoggedModelMetrics",
                columns: table => new
                {
                    Id = table.Column<long>(type: "bigint", nullable: false)
                        .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityByDefaultColumn),
                    ModelId = table.Column<string>(type: "character varying(34)", nullable: false),
                    RunId = table.Column<long>(type: "bigint", nullable: true),
                    Key = table.Column<string>(type: "character varying(250)", maxLength: 250, nullable: false),
                    Step = table.Column<long>(type: "bigint", nullable: false),
                    TimestampMs = table.Column<long>(type: "bigint", nullable: false),
                    Value = table.Column<double>(type: "double precision", nullable: true),
                    DatasetName = table.Column<string>(type: "text", nullable: true),
                    DatasetDigest = table.Column<string>(type: "text", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_LoggedModelMetrics", x => x.Id);
                    table.ForeignKey(
                        name: "FK_LoggedModelMetrics_LoggedModels_ModelId",
                        column: x => x.ModelId,
                        principalTable: "LoggedModels",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateTable(
                name: "LoggedModelParam",
                columns: table => new
                {
                    ModelId = table.Column<string>(type: "character varying(34)", nullable: false),
                    Key = table.Column<string>(type: "character varying(250)", maxLength: 250, nullable: false),
                    Value = table.Column<string>(type: "character varying(6000)", maxLength: 6000, nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_LoggedModelParam", x => new { x.ModelId, x.Key });
                    table.ForeignKey(
                        name: "FK_LoggedModelParam_LoggedModels_ModelId",
                        column: x => x.ModelId,
                        principalTable: "LoggedModels",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateTable(
                name: "LoggedModelTag",
                columns: table => new
                {
                    ModelId = table.Column<string>(type: "character varying(34)", nullable: false),
                    Key = table.Column<string>(type: "character varying(250)", maxLength: 250, nullable: false),
                    Value = table.Column<string>(type: "character varying(8000)", maxLength: 8000, nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_LoggedModelTag", x => new { x.ModelId, x.Key });
                    table.ForeignKey(
                        name: "FK_LoggedModelTag_LoggedModels_ModelId",
                        column: x => x.ModelId,
                        principalTable: "LoggedModels",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateIndex(
                name: "IX_LoggedModelMetrics_ModelId_Key_Step",
                table: "LoggedModelMetrics",
                columns: new[] { "ModelId", "Key", "Step" });

            migrationBuilder.CreateIndex(
                name: "IX_LoggedModels_ExperimentId",
                table: "LoggedModels",
                column: "ExperimentId");

            migrationBuilder.CreateIndex(
                name: "IX_LoggedModels_SourceRunId",
                table: "LoggedModels",
                column: "SourceRunId");

            migrationBuilder.CreateIndex(
                name: "IX_RunInputs_RunId",
                table: "RunInputs",
                column: "RunId");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "LoggedModelMetrics");

            migrationBuilder.DropTable(
                name: "LoggedModelParam");

            migrationBuilder.DropTable(
                name: "LoggedModelTag");

            migrationBuilder.DropTable(
                name: "RunInputs");

            migrationBuilder.DropTable(
                name: "RunOutputs");

            migrationBuilder.DropTable(
                name: "LoggedModels");
        }
    }
}
