# One image for the project's Node services; the command picks the service.
FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
COPY packages/shared/package.json packages/shared/
COPY packages/control-plane/package.json packages/control-plane/
COPY packages/ext-authz/package.json packages/ext-authz/
RUN npm ci --omit=dev --no-audit --no-fund && npm install --no-save tsx@4 --no-audit --no-fund
COPY tsconfig.json ./
COPY packages ./packages
COPY protos ./protos
EXPOSE 9090 9092 18000 9191 9193
CMD ["npm", "start"]
