# EMA Lab dashboard image. The official .NET 10 images ship a libstdc++ new enough for TorchSharp,
# so the build's prerequisite check finds nothing to install.
#   docker build -t emalab .
#   docker run -p 8080:8080 -v emalab:/data emalab
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
COPY global.json Directory.Build.props Directory.Packages.props ./
COPY eng/ eng/
COPY src/ src/
RUN dotnet publish src/Dashboard/Dashboard.csproj -c Release -o /app

FROM mcr.microsoft.com/dotnet/aspnet:10.0
WORKDIR /app
COPY --from=build /app .
# Inside a container the app must listen on all interfaces; the port is published explicitly with -p.
ENV ASPNETCORE_HTTP_PORTS=8080
VOLUME /data
EXPOSE 8080
ENTRYPOINT ["dotnet", "EmaLab.Dashboard.dll"]
