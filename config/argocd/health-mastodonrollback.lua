-- Argo CD health check of a MastodonRollback (migration.mastodon-operator.io/v1alpha1).
-- It reads the conditions the operator writes for kstatus (docs/health.md): Reconciling=True is
-- Running (Progressing), Stalled=True is Failed (Degraded), Ready=True is Succeeded (Healthy); a
-- rollback without conditions is Pending (Progressing). Argo CD runs it with the base and table
-- libraries.
local hs = {status = "Progressing", message = "waiting for the operator to write a status"}

local function condition(conditions, kind)
  for _, c in ipairs(conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function isTrue(c)
  return c ~= nil and c.status == "True"
end

-- The phase first, then the condition's own message: the summary `kubectl get` and `describe` show.
local function summary(c)
  local text = c.message or c.reason or ""
  if obj.status.phase ~= nil then
    return obj.status.phase .. ": " .. text
  end
  return text
end

if obj.status == nil then
  return hs
end
if obj.status.conditions == nil then
  if obj.status.phase ~= nil then
    hs.message = obj.status.phase .. ": waiting for the operator"
  end
  return hs
end
local conditions = obj.status.conditions
local reconciling = condition(conditions, "Reconciling")
local stalled = condition(conditions, "Stalled")
local ready = condition(conditions, "Ready")

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= nil and observed ~= generation then
  hs.message = "the operator has not acted on generation " .. generation .. " yet"
  return hs
end
if isTrue(reconciling) then
  hs.message = summary(reconciling)
  return hs
end
if isTrue(stalled) then
  hs.status = "Degraded"
  hs.message = summary(stalled)
  return hs
end
if isTrue(ready) then
  hs.status = "Healthy"
  hs.message = summary(ready)
  return hs
end
if ready ~= nil then
  hs.message = summary(ready)
end
return hs
