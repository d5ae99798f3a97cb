# EMA Lab dashboard image. The official .NET 10 images ship a libstdc++ new enough for TorchSharp,
# so the build's prerequisite check finds nothing to install.
#   docker build -t emalab .
#   docker run -p 8080:8080 -v emalab:/data -e EmaLab__ApiToken=change-me emalab
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
COPY global.json Directory.Build.props Directory.Packages.props ./
COPY eng/ eng/
COPY src/ src/
RUN dotnet publish src/Dashboard/Dashboard.csproj -c Release -o /app

FROM mcr.microsoft.com/dotnet/aspnet:10.0
WORKDIR /app
COPY --from=build /app .
# Inside a container the app must listen on all interfaces (the port is published explicitly with -p);
# that is an explicit setting here, and the app then refuses to start without EmaLab__ApiToken.
ENV ASPNETCORE_HTTP_PORTS=8080 \
    EmaLab__AllowRemote=true \
    EmaLab__DataDirectory=/data
# The image's non-root user owns the data folder the volume is mounted on.
RUN mkdir -p /data && chown "$APP_UID" /data
USER $APP_UID
VOLUME /data
EXPOSE 8080
ENTRYPOINT ["dotnet", "EmaLab.Dashboard.dll"]
