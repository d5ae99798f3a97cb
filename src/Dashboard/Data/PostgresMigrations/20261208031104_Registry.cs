using Microsoft.EntityFrameworkCore.Migrations;
using Npgsql.EntityFrameworkCore.PostgreSQL.Metadata;

#nullable disable

namespace EmaLab.Dashboard.Data.PostgresMigrations
{
    /// <inheritdoc />
    public partial class Registry : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<string>(
                name: "SourceRunUuid",
                table: "LoggedModels",
                type: "character varying(64)",
                maxLength: 64,
                nullable: true);

            migrationBuilder.CreateTable(
                name: "RegisteredModels",
                columns: table => new
                {
                    Id = table.Column<long>(type: "bigint", nullable: false)
                        .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityByDefaultColumn),
                    Name = table.Column<string>(type: "character varying(256)", maxLength: 256, nullable: false),
                    CreationTimeMs = table.Column<long>(type: "bigint", nullable: false),
                    LastUpdatedTimeMs = table.Column<long>(type: "bigint", nullable: false),
                    Description = table.Column<string>(type: "character varying(5000)", maxLength: 5000, nullable: true),
                    CreatedBy = table.Column<string>(type: "character varying(256)", maxLength: 256, nullable: true),
                    LastVersion = table.Column<int>(type: "integer", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_RegisteredModels", x => x.Id);
                });

            migrationBuilder.CreateTable(
                name: "ModelVersions",
                columns: table => new
                {
                    Id = table.Column<long>(type: "bigint", nullable: false)
                        .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityByDefaultColumn),
                    RegisteredModelId = table.Column<long>(type: "bigint", nullable: false),
                    Version = table.Column<int>(type: "integer", nullable: false),
                    CreationTimeMs = table.Column<long>(type: "bigint", nullable: false),
                    LastUpdatedTimeMs = table.Column<long>(type: "bigint", nullable: false),
                    Description = table.Column<string>(type: "character varying(5000)", maxLength: 5000, nullable: true),
                    UserId = table.Column<string>(type: "character varying(256)", maxLength: 256, nullable: true),
                    CurrentStage = table.Column<string>(type: "character varying(20)", maxLength: 20, nullable: false),
                    Source = table.Column<string>(type: "character varying(500)", maxLength: 500, nullable: false),
                    StorageLocation = table.Column<string>(type: "character varying(500)", maxLength: 500, nullable: true),
                    RunUuid = table.Column<string>(type: "character varying(32)", maxLength: 32, nullable: true),
                    RunLink = table.Column<string>(type: "character varying(500)", maxLength: 500, nullable: true),
                    Status = table.Column<string>(type: "character varying(20)", maxLength: 20, nullable: false),
                    StatusMessage = table.Column<string>(type: "character varying(500)", maxLength: 500, nullable: true),
                    ModelId = table.Column<string>(type: "character varying(34)", maxLength: 34, nullable: true),
                    Track = table.Column<string>(type: "character varying(64)", maxLength: 64, nullable: true),
                    Step = table.Column<long>(type: "bigint", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_ModelVersions", x => x.Id);
                    table.ForeignKey(
                        name: "FK_ModelVersions_RegisteredModels_RegisteredModelId",
                        column: x => x.RegisteredModelId,
                        principalTable: "RegisteredModels",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateTable(
                name: "RegisteredModelAliases",
                columns: table => new
                {
                    RegisteredModelId = table.Column<long>(type: "bigint", nullable: false),
                    Alias = table.Column<string>(type: "character varying(255)", maxLength: 255, nullable: false),
                    Version = table.Column<int>(type: "integer", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_RegisteredModelAliases", x => new { x.RegisteredModelId, x.Alias });
                    table.ForeignKey(
                        name: "FK_RegisteredModelAliases_RegisteredModels_RegisteredModelId",
                        column: x => x.RegisteredModelId,
                        principalTable: "RegisteredModels",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateTable(
                name: "RegisteredModelPermissions",
                columns: table => new
                {
                    RegisteredModelId = table.Column<long>(type: "bigint", nullable: false),
                    UserId = table.Column<string>(type: "character varying(450)", maxLength: 450, nullable: false),
                    Permission = table.Column<string>(type: "character varying(16)", maxLength: 16, nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_RegisteredModelPermissions", x => new { x.RegisteredModelId, x.UserId });
                    table.ForeignKey(
                        name: "FK_RegisteredModelPermissions_AspNetUsers_UserId",
                        column: x => x.UserId,
                        principalTable: "AspNetUsers",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Cascade);
                    table.ForeignKey(
                        name: "FK_RegisteredModelPermissions_RegisteredModels_RegisteredModel~",
                        column: x => x.RegisteredModelId,
                        principalTable: "RegisteredModels",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateTable(
                name: "RegisteredModelTag",
                columns: table => new
                {
                    RegisteredModelId = table.Column<long>(type: "bigint", nullable: false),
                    Key = table.Column<string>(type: "character varying(250)", maxLength: 250, nullable: false),
                    Value = table.Column<string>(type: "text", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_RegisteredModelTag", x => new { x.RegisteredModelId, x.Key });
                    table.ForeignKey(
                        name: "FK_RegisteredModelTag_RegisteredModels_RegisteredModelId",
                        column: x => x.RegisteredModelId,
                        principalTable: "RegisteredModels",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateTable(
                name: "ModelVersionTag",
                columns: table => new
                {
                    ModelVersionId = table.Column<long>(type: "bigint", nullable: false),
                    Key = table.Column<string>(type: "character varying(250)", maxLength: 250, nullable: false),
                    Value = table.Column<string>(type: "text", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_ModelVersionTag", x => new { x.ModelVersionId, x.Key });
                    table.ForeignKey(
                        name: "FK_ModelVersionTag_ModelVersions_ModelVersionId",
                        column: x => x.ModelVersionId,
                        principalTable: "ModelVersions",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateIndex(
                name: "IX_ModelVersions_ModelId",
                table: "ModelVersions",
                column: "ModelId");

            migrationBuilder.CreateIndex(
                name: "IX_ModelVersions_RegisteredModelId_Version",
                table: "ModelVersions",
                columns: new[] { "RegisteredModelId", "Version" },
                unique: true);

            migrationBuilder.CreateIndex(
                name: "IX_ModelVersions_RunUuid",
                table: "ModelVersions",
                column: "RunUuid");

            migrationBuilder.CreateIndex(
                name: "IX_RegisteredModelPermissions_UserId",
                table: "RegisteredModelPermissions",
                column: "UserId");

            migrationBuilder.CreateIndex(
                name: "IX_RegisteredModels_Name",
                table: "RegisteredModels",
                column: "Name",
                unique: true);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "ModelVersionTag");

            migrationBuilder.DropTable(
                name: "RegisteredModelAliases");

            migrationBuilder.DropTable(
                name: "RegisteredModelPermissions");

            migrationBuilder.DropTable(
                name: "RegisteredModelTag");

            migrationBuilder.DropTable(
                name: "ModelVersions");

            migrationBuilder.DropTable(
                name: "RegisteredModels");

            migrationBuilder.DropColumn(
                name: "SourceRunUuid",
                table: "LoggedModels");
        }
    }
}
